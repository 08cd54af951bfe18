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
from tests.browser import CHROMIUM, launch
from tests.test_admin import failed_job, make_job

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium is missing (apt-get install -y chromium)"
)


@contextmanager
def chromium_page(base_url: str) -> Iterator[Any]:
    """A headless chromium page; no ORM call may run inside (Playwright keeps an event loop here)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(base_url=base_url)
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
