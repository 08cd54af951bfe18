"""The operators' admin through the test client: lists, filters, search, actions, permissions, dashboard."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_bourbon_jobs.admin import paginator
from django_bourbon_jobs.models import Job, JobStatus, Worker
from tests.factories import failed_job, make_job, make_user

pytestmark = pytest.mark.django_db

JOBS = reverse("admin:bourbon_jobs_job_changelist")
FAILURES = reverse("admin:bourbon_jobs_job_failures")
DASHBOARD = reverse("admin:bourbon_jobs_job_dashboard")
WORKERS = reverse("admin:bourbon_jobs_worker_changelist")


def staff(django_user_model, *codenames: str):
    return make_user("support", *codenames, password="pw", is_staff=True)


def action(client, url: str, name: str, jobs=(), select_across: bool = False, **extra: str):
    """POST the changelist's action form; a confirmation (``post=yes``) sends no ``index``, like the page."""
    data = {"action": name, ACTION_CHECKBOX_NAME: [str(job.pk) for job in jobs], **extra}
    data["select_across"] = "1" if select_across else "0"
    if "post" not in extra:
        data["index"] = "0"
    return client.post(url, data, follow=True)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def row_ids(response) -> set[str]:
    return {str(job.pk) for job in response.context["cl"].result_list}


# The job list


def test_list_shows_status_as_colour_and_text_newest_first(admin_client):
    older = make_job(enqueued_at=timezone.now() - timedelta(minutes=5))
    newer = failed_job()
    response = admin_client.get(JOBS)
    assert response.status_code == 200
    assert [job.pk for job in response.context["cl"].result_list] == [newer.pk, older.pk]
    html = response.content.decode()
    assert '<span class="bourbon-status bourbon-status-failed">Failed</span>' in html
    assert '<span class="bourbon-status bourbon-status-queued">Queued</span>' in html
    assert "2/2" in html  # attempts/max
    assert "3.0 s" in html  # duration: finished_at - started_at


def list_page_queries(client, url: str) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return [query["sql"] for query in queries.captured_queries]


@pytest.mark.parametrize("url", [JOBS, FAILURES])
def test_list_query_count_does_not_grow_with_rows(admin_client, url):
    for _ in range(5):
        failed_job()
    few = list_page_queries(admin_client, url)
    for _ in range(45):
        failed_job(dispatched_by=None)
    many = list_page_queries(admin_client, url)
    assert len(few) == len(many) <= 8


def test_list_never_counts_the_whole_table(admin_client):
    make_job()
    counts = [sql for sql in list_page_queries(admin_client, JOBS) if "COUNT(" in sql.upper()]
    assert counts, "the paginator's bounded count is expected"
    assert all("LIMIT" in sql.upper() for sql in counts), counts


def test_list_rows_leave_payloads_and_tracebacks_out(admin_client):
    failed_job()
    selects = [
        sql for sql in list_page_queries(admin_client, JOBS) if '"bourbon_jobs_job"."task_path",' in sql
    ]
    assert selects and all('"bourbon_jobs_job"."errors"' not in sql for sql in selects)


def test_past_the_count_cap_the_list_says_more_than(admin_client, monkeypatch):
    monkeypatch.setattr(paginator.CappedCountPaginator, "cap", 3)
    for _ in range(5):
        make_job()
    html = admin_client.get(JOBS).content.decode()
    assert "more than 3 jobs" in html
    assert "Select all more than 3 matching jobs" in html


@pytest.mark.parametrize(
    "query, expected",
    [
        ("status__exact=failed", {"failed"}),
        ("status__exact=queued", {"queued"}),
        ("task_path=shop.tasks.mail", {"mail"}),
        ("queue_name=emails", {"mail"}),
        ("enqueued=1h", {"queued", "mail"}),
        ("enqueued=24h", {"queued", "mail", "failed"}),
        ("enqueued=older", {"ancient"}),
    ],
)
def test_each_filter(admin_client, query, expected):
    now = timezone.now()
    jobs = {
        "queued": make_job(),
        "mail": make_job(task_path="shop.tasks.mail", queue_name="emails", status=JobStatus.SUCCEEDED),
        "failed": failed_job(enqueued_at=now - timedelta(hours=3)),
        "ancient": make_job(enqueued_at=now - timedelta(days=30), status=JobStatus.CANCELLED),
    }
    response = admin_client.get(f"{JOBS}?{query}")
    assert row_ids(response) == {str(jobs[name].pk) for name in expected}


def test_task_and_queue_filters_offer_the_values_in_use(admin_client):
    make_job(task_path="shop.tasks.mail", queue_name="emails")
    make_job(task_path="shop.tasks.sync")
    html = admin_client.get(JOBS).content.decode()
    assert "?task_path=shop.tasks.mail" in html and "?task_path=shop.tasks.sync" in html
    assert "?queue_name=emails" in html and "?queue_name=default" in html


@pytest.mark.parametrize("term", ["id", "mail", "Disk Quota"])
def test_search_by_id_task_and_error_text(admin_client, term):
    wanted = failed_job(task_path="shop.tasks.mail", message="disk quota exceeded")
    make_job(task_path="shop.tasks.sync")
    response = admin_client.get(JOBS, {"q": str(wanted.pk) if term == "id" else term})
    assert row_ids(response) == {str(wanted.pk)}


# Failures


def test_failures_lists_only_failed_jobs_with_their_last_error(admin_client):
    failed = failed_job(exception="shop.errors.PaymentDeclined", message="card <b>declined</b>")
    make_job()
    make_job(status=JobStatus.SUCCEEDED)
    response = admin_client.get(FAILURES)
    assert response.status_code == 200
    assert row_ids(response) == {str(failed.pk)}
    html = response.content.decode()
    assert "<h1>Failures</h1>" in html
    assert "shop.errors.PaymentDeclined" in html
    assert "card &lt;b&gt;declined&lt;/b&gt;" in html
    assert "first try" not in html  # only the last error is listed


def test_failures_are_grouped_and_filtered_by_exception_class(admin_client):
    timeouts = [failed_job(exception="shop.errors.Timeout") for _ in range(2)]
    failed_job(exception="builtins.KeyError")
    html = admin_client.get(FAILURES).content.decode()
    assert "shop.errors.Timeout (2)" in html and "builtins.KeyError (1)" in html
    response = admin_client.get(FAILURES, {"exception": "shop.errors.Timeout"})
    assert row_ids(response) == {str(job.pk) for job in timeouts}


def test_failures_search_reaches_error_text(admin_client):
    wanted = failed_job(message="connection reset by peer")
    failed_job(message="other")
    assert row_ids(admin_client.get(FAILURES, {"q": "reset by"})) == {str(wanted.pk)}


# The job page


def test_job_page_shows_payload_escaped_errors_timeline_worker_and_dispatcher(admin_client, admin_user):
    Worker.objects.create(id="host-1-abc", hostname="host-1", pid=4242)
    job = failed_job(args=["<script>alert(1)</script>"], kwargs={"n": 1}, dispatched_by=admin_user)
    response = admin_client.get(reverse("admin:bourbon_jobs_job_change", args=[job.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert "&quot;n&quot;: 1" in html  # pretty-printed
    assert html.count('class="bourbon-traceback"') == 2  # every attempt's traceback
    assert "File &quot;shop/tasks.py&quot;, line 9" in html
    assert "Enqueued" in html and "Attempt 1 failed on host-1-abc" in html and "Attempt 2 failed" in html
    assert reverse("admin:bourbon_jobs_worker_change", args=["host-1-abc"]) in html
    assert admin_user.username in html
    assert reverse("admin:bourbon_jobs_job_retry", args=[job.pk]) in html
    assert reverse("admin:bourbon_jobs_job_cancel", args=[job.pk]) not in html  # only queued jobs cancel
    assert 'name="_save"' not in html  # read-only


def test_job_page_timeline_shows_seconds(admin_client):
    """Attempts a few seconds apart must not read as one moment."""
    enqueued = timezone.now().replace(year=2026, month=5, day=4, hour=10, minute=0, second=7, microsecond=0)
    job = failed_job(enqueued_at=enqueued, finished_at=enqueued + timedelta(seconds=12))
    html = admin_client.get(reverse("admin:bourbon_jobs_job_change", args=[job.pk])).content.decode()
    assert "2026-05-04 10:00:07 UTC</time> <strong>Enqueued" in html
    assert "2026-05-04 10:00:19 UTC</time> <strong>Failed" in html


def test_job_page_offers_cancel_for_a_queued_job(admin_client):
    job = make_job()
    html = admin_client.get(reverse("admin:bourbon_jobs_job_change", args=[job.pk])).content.decode()
    assert reverse("admin:bourbon_jobs_job_cancel", args=[job.pk]) in html
    assert reverse("admin:bourbon_jobs_job_retry", args=[job.pk]) not in html


def test_job_page_retry_and_cancel_buttons(admin_client):
    failed, queued = failed_job(), make_job()
    response = admin_client.post(reverse("admin:bourbon_jobs_job_retry", args=[failed.pk]), follow=True)
    assert messages_of(response) == ["Queued again."]
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, len(failed.errors)) == (JobStatus.QUEUED, 0, 2)
    response = admin_client.post(reverse("admin:bourbon_jobs_job_cancel", args=[queued.pk]), follow=True)
    assert messages_of(response) == ["Cancelled."]
    assert Job.objects.get(pk=queued.pk).status == JobStatus.CANCELLED
    response = admin_client.post(reverse("admin:bourbon_jobs_job_cancel", args=[queued.pk]), follow=True)
    assert messages_of(response) == ["Only a queued job can be cancelled."]


def test_job_page_buttons_need_post(admin_client):
    job = failed_job()
    assert admin_client.get(reverse("admin:bourbon_jobs_job_retry", args=[job.pk])).status_code == 405
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED


def test_jobs_cannot_be_added_or_edited(admin_client):
    job = make_job(kwargs={"n": 1})
    assert admin_client.get(reverse("admin:bourbon_jobs_job_add")).status_code == 403
    url = reverse("admin:bourbon_jobs_job_change", args=[job.pk])
    admin_client.post(url, {"kwargs": '{"n": 2}', "status": "succeeded"})
    job.refresh_from_db()
    assert (job.kwargs, job.status) == ({"n": 1}, JobStatus.QUEUED)


# Actions


def test_retry_selection_keeps_the_error_history(admin_client):
    chosen, other = failed_job(), failed_job()
    response = action(admin_client, JOBS, "retry_jobs", [chosen])
    assert messages_of(response) == ["Queued 1 job again."]
    chosen.refresh_from_db()
    assert (chosen.status, chosen.attempts, chosen.finished_at, len(chosen.errors)) == (
        JobStatus.QUEUED,
        0,
        None,
        2,
    )
    assert Job.objects.get(pk=other.pk).status == JobStatus.FAILED


def test_retry_all_matching_the_filter_in_one_update(admin_client):
    timeouts = [failed_job(exception="shop.errors.Timeout") for _ in range(3)]
    key_error = failed_job(exception="builtins.KeyError")
    with CaptureQueriesContext(connection) as queries:
        response = action(
            admin_client, f"{FAILURES}?exception=shop.errors.Timeout", "retry_jobs", timeouts[:1], True
        )
    assert messages_of(response) == ["Queued 3 jobs again."]
    assert set(Job.objects.queued().values_list("pk", flat=True)) == {job.pk for job in timeouts}
    assert Job.objects.get(pk=key_error.pk).status == JobStatus.FAILED
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1


def test_cancel_changes_only_queued_jobs_and_says_how_many(admin_client):
    queued, running = make_job(), make_job(status=JobStatus.RUNNING)
    response = action(admin_client, JOBS, "cancel_jobs", [queued, running])
    assert messages_of(response) == ["Cancelled 1 job."]
    assert Job.objects.get(pk=queued.pk).status == JobStatus.CANCELLED
    assert Job.objects.get(pk=running.pk).status == JobStatus.RUNNING


@pytest.fixture
def finished_signals():
    """The (pk, status) of every job ``job_finished`` is sent for while the test runs."""
    from django_bourbon_jobs.signals import job_finished

    seen: list[tuple[Any, str]] = []

    def receiver(sender: Any, job: Job, **kwargs: Any) -> None:
        seen.append((job.pk, job.status))

    job_finished.connect(receiver, dispatch_uid="test_admin.finished_signals")
    yield seen
    job_finished.disconnect(dispatch_uid="test_admin.finished_signals")


def test_cancel_sends_job_finished_for_each_job_it_cancelled(admin_client, finished_signals):
    queued = [make_job() for _ in range(2)]
    running, done = make_job(status=JobStatus.RUNNING), failed_job()
    action(admin_client, JOBS, "cancel_jobs", [*queued, running, done])
    assert sorted(finished_signals) == sorted((job.pk, JobStatus.CANCELLED) for job in queued)


def test_cancel_all_matching_goes_in_chunks_and_misses_none(admin_client, finished_signals, monkeypatch):
    from django_bourbon_jobs import operations

    monkeypatch.setattr(operations, "CHUNK", 2)
    queued = [make_job(queue_name="bulk") for _ in range(5)]
    other_queue = make_job(queue_name="other")
    with CaptureQueriesContext(connection) as queries:
        response = action(admin_client, f"{JOBS}?queue_name=bulk", "cancel_jobs", queued[:1], True)
    assert messages_of(response) == ["Cancelled 5 jobs."]
    assert sorted(pk for pk, _ in finished_signals) == sorted(job.pk for job in queued)
    assert Job.objects.get(pk=other_queue.pk).status == JobStatus.QUEUED
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 3, "5 jobs in chunks of 2"


def test_job_page_cancel_sends_job_finished_once(admin_client, finished_signals):
    job = make_job()
    url = reverse("admin:bourbon_jobs_job_cancel", args=[job.pk])
    admin_client.post(url)
    admin_client.post(url)
    assert finished_signals == [(job.pk, JobStatus.CANCELLED)]


def test_delete_asks_once_with_the_count_then_deletes(admin_client):
    doomed = [failed_job() for _ in range(2)]
    kept = make_job()
    confirm = action(admin_client, JOBS, "delete_jobs", doomed)
    assert "Delete 2 jobs?" in confirm.content.decode()
    assert Job.objects.count() == 3
    response = action(admin_client, JOBS, "delete_jobs", doomed, post="yes")
    assert messages_of(response) == ["Deleted 2 jobs."]
    assert list(Job.objects.values_list("pk", flat=True)) == [kept.pk]


def test_delete_all_matching_uses_one_delete(admin_client):
    failures = [failed_job() for _ in range(4)]
    kept = make_job()
    confirm = action(admin_client, FAILURES, "delete_jobs", failures[:1], True).content.decode()
    assert "Delete 4 jobs?" in confirm and 'name="select_across" value="1"' in confirm
    with CaptureQueriesContext(connection) as queries:
        response = action(admin_client, FAILURES, "delete_jobs", failures[:1], True, post="yes")
    assert messages_of(response) == ["Deleted 4 jobs."]
    assert list(Job.objects.values_list("pk", flat=True)) == [kept.pk]
    assert len([q for q in queries.captured_queries if q["sql"].startswith("DELETE")]) == 1
    loaded_rows = [q for q in queries.captured_queries if '"bourbon_jobs_job"."args"' in q["sql"]]
    assert not loaded_rows


def test_djangos_per_row_delete_action_is_replaced(admin_client):
    html = admin_client.get(JOBS).content.decode()
    assert 'value="delete_selected"' not in html
    assert 'value="delete_jobs"' in html


# Permissions


def test_view_permission_shows_others_jobs_without_acting_on_them(client, django_user_model):
    client.force_login(staff(django_user_model, "view_job"))
    job = failed_job()
    response = client.get(JOBS)
    assert response.status_code == 200
    assert [row.pk for row in response.context["cl"].result_list] == [job.pk]
    page = client.get(reverse("admin:bourbon_jobs_job_change", args=[job.pk])).content.decode()
    assert reverse("admin:bourbon_jobs_job_retry", args=[job.pk]) not in page
    assert client.post(reverse("admin:bourbon_jobs_job_retry", args=[job.pk])).status_code == 403
    said = messages_of(action(client, JOBS, "retry_jobs", [job]))
    assert said == [
        "Queued 0 jobs again. Only your own jobs were considered: "
        "to retry others' you need the retry_job permission."
    ]
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED


def test_support_staff_can_retry_but_not_delete(client, django_user_model):
    client.force_login(staff(django_user_model, "view_job", "retry_job"))
    job = failed_job()
    actions = client.get(JOBS).context["cl"].model_admin.get_actions(client.get(JOBS).wsgi_request)
    assert "delete_jobs" not in actions
    action(client, JOBS, "delete_jobs", [job], post="yes")
    assert Job.objects.filter(pk=job.pk).exists()
    assert messages_of(action(client, JOBS, "retry_jobs", [job])) == ["Queued 1 job again."]


@pytest.mark.parametrize("codenames, deletes", [(("view_job",), False), (("view_job", "delete_job"), True)])
def test_retry_and_cancel_are_offered_to_all_delete_only_with_its_permission(
    client, django_user_model, codenames, deletes
):
    """Retry and cancel narrow the selection to what the user may act on (their own jobs at least)."""
    client.force_login(staff(django_user_model, *codenames))
    response = client.get(JOBS)
    offered = set(response.context["cl"].model_admin.get_actions(response.wsgi_request))
    assert offered == {"retry_jobs", "cancel_jobs"} | ({"delete_jobs"} if deletes else set())


def test_without_view_permission_staff_see_and_act_on_their_own_jobs_only(client, django_user_model):
    support = staff(django_user_model)
    client.force_login(support)
    mine, theirs = failed_job(dispatched_by=support), failed_job()
    for url in (JOBS, FAILURES):
        response = client.get(url)
        assert response.status_code == 200
        assert [row.pk for row in response.context["cl"].result_list] == [mine.pk]
    assert (
        client.get(reverse("admin:bourbon_jobs_job_change", args=[theirs.pk]), follow=True).status_code == 200
    )
    assert theirs.pk not in [row.pk for row in client.get(JOBS).context["cl"].result_list], (
        "another user's job is not listed"
    )
    page = client.get(reverse("admin:bourbon_jobs_job_change", args=[mine.pk])).content.decode()
    assert reverse("admin:bourbon_jobs_job_retry", args=[mine.pk]) in page
    assert client.post(reverse("admin:bourbon_jobs_job_retry", args=[theirs.pk])).status_code == 404
    action(client, JOBS, "retry_jobs", [mine, theirs])
    assert Job.objects.get(pk=mine.pk).status == JobStatus.QUEUED
    assert Job.objects.get(pk=theirs.pk).status == JobStatus.FAILED
    assert client.get(DASHBOARD).status_code == 403, "the dashboard counts everyone's jobs"


# Dashboard and workers


def test_dashboard_counts_chart_queues_and_workers(admin_client):
    now = timezone.now()
    for _ in range(3):
        make_job(status=JobStatus.SUCCEEDED, finished_at=now - timedelta(minutes=2))
    failed_job(finished_at=now - timedelta(minutes=1))
    make_job(queue_name="emails", due_at=now - timedelta(minutes=7))
    Worker.objects.create(id="w-live", hostname="live-host", pid=11, queues=["emails"])
    Worker.objects.create(
        id="w-stale", hostname="stale-host", pid=12, last_heartbeat_at=now - timedelta(hours=1)
    )
    running = make_job(status=JobStatus.RUNNING, worker_id="w-live", task_path="shop.tasks.render")
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    assert len(queries.captured_queries) <= 8
    html = response.content.decode()
    counts = {value: count for value, _, count in response.context["status_counts"]}
    assert counts == {"queued": 1, "waiting": 0, "running": 1, "succeeded": 3, "failed": 1, "cancelled": 0}
    assert '<svg id="bourbon-throughput-chart"' in html
    assert "4 finished, 1 failed; failure rate <strong>25.0%</strong>" in html
    assert sum(bar.succeeded_height > 0 for bar in response.context["bars"]) == 1
    emails = next(queue for queue in response.context["queues"] if queue.name == "emails")
    assert (emails.queued, emails.due, emails.oldest_wait.startswith("7 min")) == (1, 1, True)
    assert "live-host" in html and "stale-host" in html
    assert re.search(r'<tr class="bourbon-stale">\s*<td>stale-host', html)
    assert reverse("admin:bourbon_jobs_job_change", args=[running.pk]) in html


def test_worker_list_shows_running_jobs_and_stale_heartbeats(admin_client):
    now = timezone.now()
    Worker.objects.create(id="w-busy", hostname="busy", pid=1)
    Worker.objects.create(id="w-gone", hostname="gone", pid=2, last_heartbeat_at=now - timedelta(hours=1))
    for _ in range(2):
        make_job(status=JobStatus.RUNNING, worker_id="w-busy")
    response = admin_client.get(WORKERS)
    rows = {worker.pk: worker for worker in response.context["cl"].result_list}
    assert (rows["w-busy"].running_jobs, rows["w-gone"].running_jobs) == (2, 0)
    assert response.content.decode().count(">stale</span>") == 1
    assert admin_client.get(reverse("admin:bourbon_jobs_worker_add")).status_code == 403
