"""The jobs API: dispatch, status, list, cancel, retry; ownership, idempotency, limits, throttling."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.testing import drain
from tests.factories import API, api_client, dispatch_over_api, make_job, make_user

NOT_A_TASK = "tests.tasks.not_a_task"

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> User:
    """Staff, with no job permission: the admin opens to them, and they see their own jobs only."""
    return make_user("support", is_staff=True)


@pytest.fixture
def operator() -> User:
    """Anyone with ``view_job`` sees every job; staff or not makes no difference to the API."""
    return make_user("operator", "view_job")


# Dispatch


def test_dispatch_answers_202_with_urls_and_location(alice: User) -> None:
    response = dispatch_over_api(api_client(alice), queue_name="emails", priority=7, delay=60)
    assert response.status_code == 202, response.content
    body = response.json()
    job = Job.objects.get()
    assert body == {
        "job_id": str(job.id),
        "status": "queued",
        "status_url": f"http://testserver{API}{job.id}/",
        "events_url": f"http://testserver{API}{job.id}/events/",
    }
    assert response["Location"] == body["status_url"]
    assert (job.task_path, job.queue_name, job.priority, job.args) == (
        "tests.tasks.echo",
        "emails",
        7,
        [{"n": 1}],
    )
    assert job.dispatched_by == alice
    assert job.run_after > job.enqueued_at + timedelta(seconds=59)


def test_dispatch_by_task_path_and_run_after(alice: User) -> None:
    when = timezone.now() + timedelta(hours=1)
    response = dispatch_over_api(api_client(alice), task="tests.tasks.echo", run_after=when.isoformat())
    assert response.status_code == 202
    assert Job.objects.get().run_after == when


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"task": "nope"}, "task"),
        ({"task": NOT_A_TASK}, "task"),
        ({"task": "django.core.management.call_command"}, "task"),
        ({"task": "tests.tasks.record"}, "task"),  # a task, but not listed
        ({"task": ""}, "task"),
        ({"priority": 101}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"delay": -1}, "delay"),
        ({"delay": 5, "run_after": "2030-01-01T00:00:00Z"}, "delay"),
        ({"run_after": "tomorrow"}, "run_after"),
        ({"queue_name": ""}, "queue_name"),
        ({"payload": {"text": "nul\x00"}}, "payload"),
        ({"callback_url": "not a url"}, "callback_url"),
        ({"callback_url": "https://evil.test/hook"}, "callback_url"),
        ({"callback_url": "http://169.254.169.254/latest/meta-data"}, "callback_url"),
    ],
)
def test_dispatch_rejects_bad_input_naming_the_field(alice: User, body: dict[str, Any], field: str) -> None:
    response = dispatch_over_api(api_client(alice), **body)
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Job.objects.exists()


def test_unlisted_task_error_names_the_problem(alice: User) -> None:
    response = dispatch_over_api(api_client(alice), task=NOT_A_TASK)
    assert response.json()["task"] == [
        f"Task '{NOT_A_TASK}' cannot be dispatched over HTTP: it is not in API_TASKS."
    ]


def test_nothing_is_dispatchable_without_api_tasks(alice: User, settings: Any) -> None:
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "API_TASKS": {}}
    assert dispatch_over_api(api_client(alice)).status_code == 400
    assert dispatch_over_api(api_client(alice), task="tests.tasks.echo").status_code == 400


def test_a_list_of_paths_is_accepted(alice: User, settings: Any) -> None:
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "API_TASKS": ["tests.tasks.echo"]}
    assert dispatch_over_api(api_client(alice)).status_code == 400  # the alias is gone
    assert dispatch_over_api(api_client(alice), task="tests.tasks.echo").status_code == 202


def test_queue_not_in_backend_queues_is_400(alice: User, settings: Any) -> None:
    settings.TASKS = {
        "default": {"BACKEND": "django_bourbon_jobs.backends.DatabaseBackend", "QUEUES": ["default"]}
    }
    response = dispatch_over_api(api_client(alice), queue_name="elsewhere")
    assert response.status_code == 400
    assert "elsewhere" in response.json()["detail"]


def test_dispatch_needs_json(alice: User) -> None:
    response = api_client(alice).post(API, "task=echo", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    response = api_client(alice).post(API, "{not json", content_type="application/json")
    assert response.status_code == 400
    response = api_client(alice).post(API, [1, 2], format="json")
    assert response.status_code == 400


def test_payload_over_the_limit_is_413_and_stores_nothing(alice: User, settings: Any) -> None:
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "API_MAX_PAYLOAD_BYTES": 100}
    response = dispatch_over_api(api_client(alice), payload={"text": "x" * 100})
    assert response.status_code == 413
    assert "at most 100" in response.json()["detail"]
    assert dispatch_over_api(api_client(alice), payload={"text": "x" * 50}).status_code == 202
    # A body far over the limit is refused before it is parsed.
    response = api_client(alice).post(API, "[" + "1," * 10_000 + "1]", content_type="application/json")
    assert response.status_code == 413
    assert Job.objects.count() == 1


def test_anonymous_gets_403_everywhere(alice: User) -> None:
    job = make_job(alice)
    anonymous = api_client(None)
    assert dispatch_over_api(anonymous).status_code == 403
    assert anonymous.get(API).status_code == 403
    assert anonymous.get(f"{API}{job.id}/").status_code == 403
    assert anonymous.post(f"{API}{job.id}/cancel/").status_code == 403
    assert not Job.objects.exclude(pk=job.pk).exists()


# Idempotency


def test_same_key_same_user_returns_the_first_job(alice: User, bob: User) -> None:
    first = dispatch_over_api(api_client(alice), idempotency_key="order-1")
    again = dispatch_over_api(api_client(alice), idempotency_key="order-1", payload={"n": 2})
    assert again.status_code == 202
    assert again.json()["job_id"] == first.json()["job_id"]
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    other_user = dispatch_over_api(api_client(bob), idempotency_key="order-1")
    other_key = dispatch_over_api(api_client(alice), idempotency_key="order-2")
    assert len({first.json()["job_id"], other_user.json()["job_id"], other_key.json()["job_id"]}) == 3
    assert Job.objects.count() == 3


def test_idempotency_key_header(alice: User) -> None:
    client = api_client(alice)
    first = client.post(API, {"task": "echo"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    again = client.post(API, {"task": "echo"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert first.json()["job_id"] == again.json()["job_id"]
    assert Job.objects.get().idempotency_key == "k"


def test_a_replay_shows_the_first_jobs_current_status(alice: User) -> None:
    first = dispatch_over_api(api_client(alice), idempotency_key="k")
    Job.objects.update(status=JobStatus.SUCCEEDED, finished_at=timezone.now())
    assert dispatch_over_api(api_client(alice), idempotency_key="k").json()["status"] == "succeeded"
    assert first.json()["status"] == "queued"


def test_the_key_expires_after_the_window(alice: User, settings: Any) -> None:
    first = dispatch_over_api(api_client(alice), idempotency_key="k").json()["job_id"]
    Job.objects.update(enqueued_at=timezone.now() - timedelta(seconds=120))
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "IDEMPOTENCY_WINDOW": 60}
    assert dispatch_over_api(api_client(alice), idempotency_key="k").json()["job_id"] != first


# Status


def test_status_shows_every_field(alice: User) -> None:
    job = make_job(alice, status=JobStatus.SUCCEEDED, return_value={"ok": True}, attempts=1)
    body = api_client(alice).get(f"{API}{job.id}/").json()
    assert body["job_id"] == str(job.id)
    assert body["task"] == "echo"
    assert body["status"] == "succeeded"
    assert body["result"] == {"ok": True}
    assert set(body) >= {
        "job_id", "task", "queue_name", "priority", "status", "attempts", "max_attempts", "result",
        "errors", "progress", "enqueued_at", "started_at", "finished_at", "run_after", "due_at",
    }  # fmt: skip


def test_result_only_once_succeeded(alice: User) -> None:
    job = make_job(alice, status=JobStatus.RUNNING, return_value={"stale": True})
    assert api_client(alice).get(f"{API}{job.id}/").json()["result"] is None


def test_unlisted_task_shows_its_path(alice: User) -> None:
    job = make_job(alice, task_path="tests.tasks.record")
    assert api_client(alice).get(f"{API}{job.id}/").json()["task"] == "tests.tasks.record"


def test_a_job_whose_task_no_longer_imports_is_still_shown(alice: User) -> None:
    job = make_job(alice, task_path="shop.tasks.renamed_since", status=JobStatus.FAILED)
    response = api_client(alice).get(f"{API}{job.id}/")
    assert response.status_code == 200
    assert (response.json()["task"], response.json()["status"]) == ("shop.tasks.renamed_since", "failed")


def test_errors_show_the_traceback_only_to_operators(alice: User, staff: User, operator: User) -> None:
    error = {
        "exception_class_path": "builtins.ValueError",
        "message": "bad",
        "traceback": "Traceback ...\nValueError: bad\n",
        "worker_id": "w1",
        "attempt": 1,
        "at": "2030-01-01T00:00:00+00:00",
    }
    job = make_job(alice, status=JobStatus.FAILED, errors=[error], attempts=1)
    own = api_client(alice).get(f"{API}{job.id}/").json()["errors"]
    assert own == [
        {"exception_class": "builtins.ValueError", "message": "bad", "attempt": 1, "at": error["at"]}
    ]
    assert api_client(staff).get(f"{API}{job.id}/").status_code == 404, "staff alone see nothing more"
    seen_by_operator = api_client(operator).get(f"{API}{job.id}/").json()["errors"]
    assert seen_by_operator[0]["traceback"] == error["traceback"]


def test_a_real_failure_as_the_api_shows_it(transactional_db: None, alice: User) -> None:
    job_id = dispatch_over_api(api_client(alice), task="always_fails").json()["job_id"]
    drain()
    drain()
    body = api_client(alice).get(f"{API}{job_id}/").json()
    assert body["status"] == "failed"
    assert [e["exception_class"] for e in body["errors"]] == ["builtins.ValueError"] * 2
    assert body["errors"][0]["message"] == "this job always fails"
    assert body["attempts"] == body["max_attempts"] == 2


def test_unknown_and_malformed_ids_are_404(alice: User) -> None:
    client = api_client(alice)
    assert client.get(f"{API}{uuid.uuid4()}/").status_code == 404
    assert client.get(f"{API}not-a-uuid/").status_code == 404
    assert client.get(f"{API}{'-' * 36}/").status_code == 404


# Ownership


def test_another_users_job_is_404_everywhere(alice: User, bob: User) -> None:
    job = make_job(alice, status=JobStatus.FAILED)
    intruder = api_client(bob)
    for method, suffix in [("get", ""), ("post", "cancel/"), ("post", "retry/"), ("get", "events/")]:
        response = getattr(intruder, method)(f"{API}{job.id}/{suffix}")
        assert response.status_code == 404, (method, suffix)
    assert intruder.get(API).json()["results"] == []
    assert intruder.get(API, {"status": "failed"}).json()["results"] == []
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


def test_jobs_without_a_dispatcher_are_for_view_job_only(alice: User, staff: User, operator: User) -> None:
    job = make_job(None)
    assert api_client(alice).get(f"{API}{job.id}/").status_code == 404
    assert api_client(staff).get(f"{API}{job.id}/").status_code == 404
    assert api_client(operator).get(f"{API}{job.id}/").status_code == 200


def test_staff_without_job_permissions_see_and_act_on_their_own_only(alice: User, staff: User) -> None:
    """The audit: staff without permissions were refused in the admin but read, retried, cancelled here."""
    theirs, own = make_job(alice, status=JobStatus.FAILED), make_job(staff, status=JobStatus.FAILED)
    client = api_client(staff)
    assert [j["job_id"] for j in client.get(API).json()["results"]] == [str(own.id)]
    for verb in ("", "retry/", "cancel/", "events/"):
        method = client.get if verb in ("", "events/") else client.post
        assert method(f"{API}{theirs.id}/{verb}").status_code == 404, verb
    assert client.post(f"{API}{own.id}/retry/").status_code == 202
    assert client.post(f"{API}{own.id}/cancel/").status_code == 200


def test_superusers_hold_every_permission(alice: User) -> None:
    job = make_job(alice, status=JobStatus.FAILED)
    root = User.objects.create_superuser("admin")
    assert api_client(root).post(f"{API}{job.id}/retry/").status_code == 202


def test_view_permission_sees_all_but_acts_only_with_more(alice: User, bob: User) -> None:
    job = make_job(alice, status=JobStatus.FAILED)
    bob.user_permissions.add(Permission.objects.get(codename="view_job"))
    bob = User.objects.get(pk=bob.pk)
    client = api_client(bob)
    assert client.get(f"{API}{job.id}/").status_code == 200
    assert client.post(f"{API}{job.id}/retry/").status_code == 403
    bob.user_permissions.add(Permission.objects.get(codename="retry_job"))
    assert api_client(User.objects.get(pk=bob.pk)).post(f"{API}{job.id}/retry/").status_code == 202


def test_middleware_dispatch_is_owned_by_the_request_user(alice: User, bob: User) -> None:
    web = APIClient()
    web.force_login(alice)
    job_id = web.post("/signup/", {"email": "a@example.com"}).json()["job_id"]
    assert api_client(alice).get(f"{API}{job_id}/").status_code == 200
    assert api_client(bob).get(f"{API}{job_id}/").status_code == 404


# List


def test_list_is_the_callers_newest_first_and_filtered(alice: User, bob: User) -> None:
    now = timezone.now()
    old = make_job(alice, enqueued_at=now - timedelta(minutes=2), status=JobStatus.FAILED)
    new = make_job(alice, enqueued_at=now, queue_name="emails")
    other = make_job(alice, enqueued_at=now - timedelta(minutes=1), task_path="tests.tasks.record")
    make_job(bob)
    client = api_client(alice)

    def ids(**params: str) -> list[str]:
        response = client.get(API, params)
        assert response.status_code == 200, response.content
        return [job["job_id"] for job in response.json()["results"]]

    assert ids() == [str(new.id), str(other.id), str(old.id)]
    assert ids(status="failed") == [str(old.id)]
    assert ids(status="failed,queued") == [str(new.id), str(other.id), str(old.id)]
    assert ids(task="echo") == [str(new.id), str(old.id)]
    assert ids(task="tests.tasks.echo") == [str(new.id), str(old.id)]
    assert ids(task="tests.tasks.record") == [str(other.id)]
    assert ids(queue="emails") == [str(new.id)]
    assert ids(queue="emails", status="failed") == []


def test_list_rejects_an_unknown_status(alice: User) -> None:
    response = api_client(alice).get(API, {"status": "done"})
    assert response.status_code == 400
    assert "status" in response.json()


def test_list_is_paginated(alice: User, django_assert_max_num_queries: Any) -> None:
    now = timezone.now()
    for n in range(5):
        make_job(alice, enqueued_at=now - timedelta(seconds=n))
    client = api_client(alice)
    with django_assert_max_num_queries(3):  # the page, and Django's two for has_perm("view_job")
        page = client.get(API, {"page_size": 2}).json()
    seen = [job["job_id"] for job in page["results"]]
    while page["next"]:
        page = client.get(page["next"]).json()
        seen += [job["job_id"] for job in page["results"]]
    assert len(seen) == len(set(seen)) == 5
    assert client.get(API, {"cursor": "garbage"}).status_code == 400  # issue 12: a bad cursor is a 400


# Cancel and retry


def test_cancel_a_queued_job(alice: User) -> None:
    job = make_job(alice)
    response = api_client(alice).post(f"{API}{job.id}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def test_cancel_a_running_job_asks_it_to_stop(alice: User) -> None:
    job = make_job(alice, status=JobStatus.RUNNING, worker_id="w1")
    response = api_client(alice).post(f"{API}{job.id}/cancel/")
    assert response.status_code == 202
    assert response.json()["status"] == "running"
    assert response.json()["cancel_requested"] is True


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_cancel_a_finished_job_is_409(alice: User, status: str) -> None:
    job = make_job(alice, status=status)
    response = api_client(alice).post(f"{API}{job.id}/cancel/")
    assert response.status_code == 409
    assert status in response.json()["detail"]


@pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.CANCELLED])
def test_retry_a_failed_or_cancelled_job(alice: User, status: str) -> None:
    error = {"exception_class_path": "builtins.ValueError", "message": "x", "traceback": ""}
    job = make_job(alice, status=status, attempts=3, errors=[error], finished_at=timezone.now())
    response = api_client(alice).post(f"{API}{job.id}/retry/")
    assert response.status_code == 202
    body = response.json()
    assert (body["status"], body["attempts"], body["finished_at"]) == ("queued", 0, None)
    assert len(body["errors"]) == 1


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED])
def test_retry_anything_else_is_409(alice: User, status: str) -> None:
    job = make_job(alice, status=status)
    assert api_client(alice).post(f"{API}{job.id}/retry/").status_code == 409


def test_retried_job_runs_again(transactional_db: None, alice: User) -> None:
    job_id = dispatch_over_api(api_client(alice)).json()["job_id"]
    api_client(alice).post(f"{API}{job_id}/cancel/")
    assert api_client(alice).post(f"{API}{job_id}/retry/").status_code == 202
    drain()
    assert api_client(alice).get(f"{API}{job_id}/").json()["result"] == {"n": 1}


# Throttling


def test_dispatch_is_throttled_by_default(alice: User, bob: User, settings: Any) -> None:
    cache.clear()
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {}}
    client = api_client(alice)
    codes = [dispatch_over_api(client).status_code for _ in range(61)]
    assert codes == [202] * 60 + [429]
    assert client.get(API).status_code == 200  # reading is not throttled
    assert dispatch_over_api(api_client(bob)).status_code == 202  # per user
    cache.clear()


def test_the_dispatch_rate_is_configurable(alice: User) -> None:
    cache.clear()
    with override_settings(REST_FRAMEWORK={"DEFAULT_THROTTLE_RATES": {"bourbon_jobs.dispatch": "2/hour"}}):
        codes = [dispatch_over_api(api_client(alice)).status_code for _ in range(3)]
    assert codes == [202, 202, 429]
    cache.clear()


def test_schema_is_served_and_describes_every_endpoint(client: Any) -> None:
    response = client.get(f"{API}schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert set(schema["paths"]) >= {
        API,
        f"{API}{{id}}/",
        f"{API}{{id}}/cancel/",
        f"{API}{{id}}/retry/",
        f"{API}{{id}}/events/",
    }
    assert (
        "text/event-stream" in schema["paths"][f"{API}{{id}}/events/"]["get"]["responses"]["200"]["content"]
    )


def test_retry_forgets_an_earlier_cancel_request_and_progress(alice: User) -> None:
    now = timezone.now()
    job = make_job(alice, status=JobStatus.CANCELLED, cancel_requested_at=now, progress={"current": 1})
    body = api_client(alice).post(f"{API}{job.id}/retry/").json()
    # Otherwise the worker that claims it relays the old request and cancels it again at once.
    assert (body["cancel_requested"], body["progress"]) == (False, None)


@pytest.mark.parametrize("name", ["status", "task", "queue"])
def test_list_filters_refuse_nul(alice: User, name: str) -> None:
    # PostgreSQL cannot compare text with NUL in it (found by tests/test_api_fuzz.py).
    response = api_client(alice).get(API, {name: "a\x00b"})
    assert response.status_code == 400
    assert name in response.json()
