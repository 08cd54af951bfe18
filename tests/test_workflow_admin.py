"""The workflow admin through the test client: the list, the page with its SVG graph, retry and cancel."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from django_bourbon_jobs.admin import graph
from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.workflow_graph import StepView
from django_bourbon_jobs.workflows import Workflow, group
from tests import workflow_tasks as wt
from tests.conftest import drain

pytestmark = pytest.mark.django_db(transaction=True)

LIST = reverse("admin:bourbon_jobs_workflow_changelist")


def page(run) -> str:
    return reverse("admin:bourbon_jobs_workflow_change", args=[run.id])


def staff(name: str, *codenames: str) -> Client:
    user = User.objects.create_user(name, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def diamond(user=None, breaks=False):
    wf = Workflow("nightly import")
    wf.add("fetch", wt.add_one, 1)
    if breaks:
        wf.add("parse", wt.breaks, "x", after=["fetch"])
    else:
        wf.add("parse", wt.double, after=["fetch"])
    wf.add("index", wt.add_one, after=["fetch"])
    wf.add("notify", wt.total, {"user_id": 7}, after=["parse", "index"])
    return wf.dispatch(dispatched_by=user)


def test_the_list_shows_name_status_progress_started_and_duration(admin_client: Client) -> None:
    done = diamond()
    drain()
    running = group((wt.add_one, 1), (wt.add_one, 2), name="later").then(wt.total, None).dispatch()
    response = admin_client.get(LIST)
    assert response.status_code == 200
    html = response.content.decode()
    assert "nightly import" in html and "later" in html
    assert 'bourbon-status-succeeded">Succeeded' in html and 'bourbon-status-running">Running' in html
    assert "4/4" in html and "0/3" in html and "so far" in html
    assert page(done) in html and page(running) in html
    filtered = admin_client.get(LIST, {"status__exact": "running"}).content.decode()
    assert page(running) in filtered and page(done) not in filtered


def test_the_page_draws_the_graph_and_links_each_step_to_its_job(admin_client: Client) -> None:
    run = diamond(breaks=True)
    drain()
    response = admin_client.get(page(run))
    assert response.status_code == 200
    html = response.content.decode()
    start = html.index('<svg id="bourbon-workflow-graph"')
    svg = html[start : html.index("</svg>", start)]
    assert "<script" not in svg
    for name in ("fetch", "parse", "index", "notify"):
        job_url = reverse("admin:bourbon_jobs_job_change", args=[run.steps[name].id])
        assert f'href="{job_url}"' in svg, name
    assert svg.count("<rect") == 4 and svg.count('class="bourbon-graph-edge"') == 4
    assert 'class="bourbon-node-failed"' in svg and 'class="bourbon-node-cancelled"' in svg
    assert "notify waits for parse" in svg
    assert "Retry failed steps" in html and ">Cancel<" not in html
    assert "4/4 (2 failed)" in html


def test_retry_from_the_page_requeues_the_failed_steps(admin_client: Client, tmp_path) -> None:
    run = diamond(breaks=True)
    drain()
    retry_url = reverse("admin:bourbon_jobs_workflow_retry", args=[run.id])
    assert admin_client.get(retry_url).status_code == 405
    response = admin_client.post(retry_url, follow=True)
    assert "Retrying." in response.content.decode()
    statuses = dict(Job.objects.filter(workflow_id=run.id).values_list("workflow_step__name", "status"))
    assert statuses == {"fetch": "succeeded", "parse": "queued", "index": "succeeded", "notify": "waiting"}
    run.refresh()
    assert run.status == "running"


def test_cancel_from_the_page_and_the_list_action(admin_client: Client) -> None:
    run = diamond()
    html = admin_client.get(page(run)).content.decode()
    assert ">Cancel<" in html and "Retry failed steps" not in html
    response = admin_client.post(reverse("admin:bourbon_jobs_workflow_cancel", args=[run.id]), follow=True)
    assert "Cancelled." in response.content.decode()
    run.refresh()
    assert run.status == "cancelled"
    other = diamond()
    admin_client.post(LIST, {"action": "cancel_workflows", ACTION_CHECKBOX_NAME: [other.id]})
    other.refresh()
    assert other.status == "cancelled"


def test_owners_see_their_own_workflows_and_only_view_job_sees_all() -> None:
    alice = staff("alice")
    mine = diamond(User.objects.get(username="alice"))
    theirs = diamond()
    html = alice.get(LIST).content.decode()
    assert page(mine) in html and page(theirs) not in html
    assert alice.get(page(theirs)).status_code == 404
    assert alice.get(page(mine)).status_code == 200
    assert alice.post(reverse("admin:bourbon_jobs_workflow_cancel", args=[theirs.id])).status_code == 404
    viewer = staff("viewer", "view_job")
    assert viewer.get(page(theirs)).status_code == 200
    assert viewer.post(reverse("admin:bourbon_jobs_workflow_cancel", args=[theirs.id])).status_code == 403
    theirs.refresh()
    assert theirs.status == "running"


def test_a_step_job_page_links_back_to_its_workflow(admin_client: Client) -> None:
    run = diamond()
    job_page = reverse("admin:bourbon_jobs_job_change", args=[run.steps["notify"].id])
    html = admin_client.get(job_page).content.decode()
    assert f'href="{page(run)}"' in html and "(step notify)" in html
    assert Job.objects.get(pk=run.steps["notify"].id).status == JobStatus.WAITING
    assert re.search(r"bourbon-status-waiting\">Waiting", html)


def test_a_workflow_too_large_to_draw_lists_its_steps(admin_client: Client) -> None:
    run = group(*[(wt.noop, n) for n in range(graph.MAX_DRAWN + 1)]).then(wt.noop, "done").dispatch()
    html = admin_client.get(page(run)).content.decode()
    assert "too many to draw" in html and "<svg id" not in html
    assert html.count('<span class="bourbon-status bourbon-status-') >= graph.MAX_DRAWN + 1


def test_the_layout_puts_each_step_right_of_what_it_waits_for() -> None:
    def view(name: str, *after: str) -> StepView:
        return StepView(name, name, "waiting", 0, "cancel", 0, None, None, list(after))

    steps = [view("d", "b", "c"), view("a"), view("b", "a"), view("c", "a")]
    drawn = graph.layout(steps, {})
    assert drawn is not None
    x = {node.step.name: node.x for node in drawn.nodes}
    assert x["a"] < x["b"] == x["c"] < x["d"]
    assert graph.columns(steps) == {"a": 0, "b": 1, "c": 1, "d": 2}
    assert graph.layout([view(str(n)) for n in range(graph.MAX_DRAWN + 1)], {}) is None
