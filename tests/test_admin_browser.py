"""The admin in a real browser: Playwright drives Debian's headless chromium against a live server."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection

from django_bourbon_jobs import dispatch_async
from django_bourbon_jobs.admin.jobs import JobAdmin
from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.testing import drain
from tests import tasks
from tests.browser import CHROMIUM, MISSING, launch
from tests.factories import failed_job, make_job

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=MISSING)


@contextmanager
def chromium_page(base_url: str, width: int = 1280) -> Iterator[Any]:
    """A headless chromium page; no ORM call may run inside (Playwright keeps an event loop here)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(base_url=base_url, viewport={"width": width, "height": 900})
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            browser.close()


def log_in(page, username: str, password: str) -> None:
    page.goto("/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))


@pytest.fixture
def operator(django_user_model):
    django_user_model.objects.create_superuser("operator", "op@example.com", "s3cret-pass")
    return "operator", "s3cret-pass"


def test_operator_retries_a_failure_and_watches_the_dashboard_update(
    live_server, transactional_db, operator, monkeypatch
):
    from playwright.sync_api import expect

    monkeypatch.setattr(JobAdmin, "dashboard_poll_interval", 0.2)  # no Redis here: the stream polls
    job = failed_job(exception="shop.errors.PaymentDeclined", message="card declined")
    make_job(status=JobStatus.SUCCEEDED)
    live = dispatch_async(tasks.echo, "done while the operator watches", queue_name="live")

    with chromium_page(live_server.url) as page:
        browse_failure_retry_dashboard(page, expect, operator, job)
        watch_the_dashboard_update(page, expect)

    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED
    assert Job.objects.get(pk=live.id).status == JobStatus.SUCCEEDED


def browse_failure_retry_dashboard(page: Any, expect: Any, operator: tuple[str, str], job: Job) -> None:
    log_in(page, *operator)
    page.goto("/admin/bourbon_jobs/job/failures/")
    expect(page.locator("h1")).to_have_text("Failures")
    expect(page.locator("#result_list")).to_contain_text("card declined")

    page.click(f"#result_list a[href*='{job.pk}']")
    expect(page.locator(".bourbon-traceback").first).to_contain_text(
        "shop.errors.PaymentDeclined: card declined"
    )

    page.goto("/admin/bourbon_jobs/job/failures/")
    page.check(f"input.action-select[value='{job.pk}']")
    page.select_option("select[name=action]", "retry_jobs")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("Queued 1 job again.")

    page.goto(f"/admin/bourbon_jobs/job/{job.pk}/change/")
    expect(page.locator(".bourbon-status").first).to_have_text("Queued")

    page.goto("/admin/bourbon_jobs/job/dashboard/")
    chart = page.locator("svg#bourbon-throughput-chart")
    expect(chart).to_be_visible()
    expect(chart.locator("rect.bourbon-bar-succeeded")).to_have_count(60)


def watch_the_dashboard_update(page: Any, expect: Any) -> None:
    """A worker finishes the ``live`` queue's job; the open page shows it without a reload."""
    count = page.locator("tr[data-status=succeeded] td")
    expect(count).to_have_text("1")
    expect(page.locator(".bourbon-summary")).to_contain_text("0 finished")
    drawn = page.locator("rect.bourbon-bar-succeeded:not([height='0.0'])")
    expect(drawn).to_have_count(0)
    expect(page.locator("#bourbon-dashboard-live")).to_have_attribute("data-live", "on")
    page.evaluate("window.notReloaded = true")

    worker = threading.Thread(target=run_queue, args=("live",), daemon=True)
    worker.start()
    expect(count).to_have_text("2")
    expect(page.locator(".bourbon-summary")).to_contain_text("1 finished, 0 failed")
    expect(drawn).to_have_count(1)  # this minute's bar in the chart
    expect(page.locator("tr[data-status=queued] td")).to_have_text("1")  # the retried job
    expect(page.locator("#bourbon-live-state")).to_contain_text("Live")
    assert page.evaluate("window.notReloaded") is True
    worker.join(10)


def run_queue(queue_name: str) -> None:
    """A worker in its own thread: the test's thread runs Playwright's event loop, where the ORM may not."""
    try:
        drain(queues=[queue_name])
    finally:
        connection.close()


LISTS = {
    "/admin/bourbon_jobs/job/": ["attempts", "enqueued", "duration"],
    "/admin/bourbon_jobs/job/failures/": ["exception", "last error", "attempts", "finished"],
}


@pytest.mark.parametrize("width", [1280, 1920])
def test_every_column_of_the_job_lists_is_on_screen(live_server, transactional_db, operator, width):
    """Beside the admin's navigation and filters, with long task paths and messages, nothing is cut off."""
    for n in range(3):
        failed_job(
            task_path=f"shop.tasks.synchronise_inventory_with_the_warehouse_{n}",
            queue_name="inventory-sync",
            exception="shop.integrations.warehouse.errors.WarehouseUnavailable",
            message="The warehouse API answered 503 Service Unavailable after 30 seconds " * 3,
        )
        make_job(task_path=f"shop.tasks.send_order_confirmation_email_{n}", status=JobStatus.SUCCEEDED)
    with chromium_page(live_server.url, width) as page:
        log_in(page, *operator)
        for url, wanted in LISTS.items():
            page.goto(url)
            visible_right = page.evaluate(
                "document.querySelector('#changelist-form .results').getBoundingClientRect().right"
            )
            headers = page.eval_on_selector_all(
                "#result_list thead th",
                "cs => cs.map(c => [c.innerText.trim().toLowerCase(), c.getBoundingClientRect().right])",
            )
            names = [name for name, _ in headers]
            assert all(name in names for name in wanted), (url, names)
            cut = [name for name, right in headers if right > visible_right + 1]
            assert cut == [], f"{url} at {width} px: {cut} past the right edge ({visible_right:.0f} px)"


def test_operator_follows_a_failed_workflow_from_its_graph_and_retries_it(
    live_server, transactional_db, operator
):
    """The workflow list, the SVG graph drawn by the server, a step's link to its job, retry."""
    from playwright.sync_api import expect

    from django_bourbon_jobs.workflows import Workflow
    from tests import workflow_tasks as wt

    wf = Workflow("nightly import")
    wf.add("fetch", wt.add_one, 1)
    wf.add("parse", wt.breaks, "bad feed", after=["fetch"])
    wf.add("index", wt.add_one, after=["fetch"])
    wf.add("notify", wt.total, {"user_id": 7}, after=["parse", "index"])
    run = wf.dispatch()
    drain()
    parse_id = run.steps["parse"].id

    with chromium_page(live_server.url) as page:
        log_in(page, *operator)
        page.goto("/admin/bourbon_jobs/workflow/")
        row = page.locator("#result_list tr", has_text="nightly import")
        expect(row).to_contain_text("Failed")
        expect(row).to_contain_text("4/4")
        row.locator(f"a[href*='{run.id}']").first.click()

        graph = page.locator("svg#bourbon-workflow-graph")
        expect(graph).to_be_visible()
        expect(graph.locator("rect")).to_have_count(4)
        expect(graph.locator(".bourbon-node-failed")).to_have_count(1)
        expect(graph.locator(".bourbon-node-cancelled")).to_have_count(1)
        box = graph.bounding_box()
        assert box is not None and box["width"] <= 1280, "the graph fits the page"

        graph.locator(f"a[href*='{parse_id}']").click()
        expect(page.locator(".bourbon-traceback").first).to_contain_text("step broke: bad feed")
        page.go_back()

        page.click("button:has-text('Retry failed steps')")
        expect(page.locator(".messagelist")).to_contain_text("Retrying.")
        expect(graph.locator(".bourbon-node-failed")).to_have_count(0)
        expect(graph.locator(".bourbon-node-queued")).to_have_count(1)

    statuses = dict(Job.objects.filter(workflow_id=run.id).values_list("workflow_step__name", "status"))
    assert statuses == {"fetch": "succeeded", "parse": "queued", "index": "succeeded", "notify": "waiting"}
