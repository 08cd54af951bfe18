"""One permission model across the API, its event stream and the admin (``docs/security.md``).

Seven kinds of user against another user's job in each of five states, through every
request that reads or changes a job. The expectations are written out here, not
computed by the code under test:

- the owner sees and acts on their job;
- ``view_job`` sees it (tracebacks included); ``retry_job``/``cancel_job`` act on it;
- staff status alone grants nothing; a superuser holds every permission;
- a job one may not see answers exactly as a missing one does.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from django_bourbon_jobs.events import sse
from django_bourbon_jobs.models import Job, JobStatus
from tests.conftest import close_response

pytestmark = pytest.mark.django_db

API = "/api/jobs/"
KINDS = ["owner", "stranger", "staff", "viewer", "retrier", "canceller", "superuser"]
SEES = {"owner", "viewer", "retrier", "canceller", "superuser"}
RETRIES = {"owner", "retrier", "superuser"}
CANCELS = {"owner", "canceller", "superuser"}
STATES = [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED]
PERMISSIONS = {
    "viewer": ["view_job"],
    "retrier": ["view_job", "retry_job"],
    "canceller": ["view_job", "cancel_job"],
}


def person(kind: str) -> User:
    if kind == "superuser":
        return User.objects.create_superuser(kind)
    user = User.objects.create_user(kind, is_staff=kind != "stranger")
    user.user_permissions.add(*Permission.objects.filter(codename__in=PERMISSIONS.get(kind, [])))
    return User.objects.get(pk=user.pk)


@pytest.fixture
def people() -> dict[str, User]:
    return {kind: person(kind) for kind in KINDS}


def job_of(owner: User, status: str) -> Job:
    now = timezone.now()
    error = {"exception_class_path": "builtins.ValueError", "message": "no", "traceback": "Traceback: secret"}
    return Job.objects.create(
        task_path="tests.tasks.echo",
        run_after=now,
        enqueued_at=now,
        status=status,
        dispatched_by=owner,
        attempts=1,
        errors=[error] if status == JobStatus.FAILED else [],
        started_at=now if status != JobStatus.QUEUED else None,
    )


def api(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def expected_api(kind: str, status: str, verb: str) -> int:
    if kind not in SEES:
        return 404
    if verb == "retry":
        if kind not in RETRIES:
            return 403
        return 202 if status in (JobStatus.FAILED, JobStatus.CANCELLED) else 409
    if verb == "cancel":
        if kind not in CANCELS:
            return 403
        return {JobStatus.QUEUED: 200, JobStatus.RUNNING: 202}.get(status, 409)
    return 200


@pytest.mark.parametrize("status", STATES)
@pytest.mark.parametrize("kind", KINDS)
def test_the_api_and_its_stream_follow_the_model(people: dict[str, User], kind: str, status: str) -> None:
    got, wanted = {}, {}
    for verb in ("retrieve", "events", "retry", "cancel"):
        job = job_of(people["owner"], status)
        client = api(people[kind])
        if verb == "retrieve":
            response = client.get(f"{API}{job.pk}/")
        elif verb == "events":
            response = client.get(f"{API}{job.pk}/events/", HTTP_ACCEPT="text/event-stream")
        else:
            response = client.post(f"{API}{job.pk}/{verb}/")
        close_response(response)  # a stream's slot is given back when its response closes
        got[verb], wanted[verb] = response.status_code, expected_api(kind, status, verb)
    assert got == wanted
    assert sse.slots.open == 0


@pytest.mark.parametrize("kind", KINDS)
def test_lists_hold_exactly_the_jobs_one_may_see(people: dict[str, User], kind: str) -> None:
    others = [job_of(people["owner"], status) for status in STATES]
    own = job_of(people[kind], JobStatus.QUEUED)
    listed = {row["job_id"] for row in api(people[kind]).get(API).json()["results"]}
    expected = {str(own.pk)} | ({str(job.pk) for job in others} if kind in SEES - {"owner"} else set())
    if kind == "owner":
        expected |= {str(job.pk) for job in others}
    assert listed == expected


@pytest.mark.parametrize("kind", KINDS)
def test_tracebacks_are_for_those_who_see_everyones_jobs(people: dict[str, User], kind: str) -> None:
    job = job_of(people["owner"], JobStatus.FAILED)
    response = api(people[kind]).get(f"{API}{job.pk}/")
    if kind not in SEES:
        assert response.status_code == 404
        return
    shows_traceback = "traceback" in response.json()["errors"][0]
    assert shows_traceback == (kind in {"viewer", "retrier", "canceller", "superuser"})


@pytest.mark.parametrize("verb", ["", "events/", "retry/", "cancel/"])
def test_not_yours_answers_exactly_as_missing(people: dict[str, User], verb: str) -> None:
    job = job_of(people["owner"], JobStatus.FAILED)
    client = api(people["stranger"])
    method = client.get if verb in ("", "events/") else client.post
    theirs, missing = method(f"{API}{job.pk}/{verb}"), method(f"{API}{uuid.uuid4()}/{verb}")
    assert (theirs.status_code, theirs.content) == (missing.status_code, missing.content)


def expected_admin(kind: str, status: str, action: str) -> int:
    """The admin: the same model; a job one may not see is "missing" (a redirect for a page, 404 else)."""
    if action == "page":
        return 200 if kind in SEES else 302
    if kind not in SEES:
        return 404
    allowed = RETRIES if action == "retry" else CANCELS
    return 302 if kind in allowed else 403


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.FAILED])
@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind != "stranger"])
def test_the_admin_follows_the_same_model(people: dict[str, User], kind: str, status: str) -> None:
    client = Client()
    client.force_login(people[kind])
    got, wanted = {}, {}
    for action in ("page", "retry", "cancel"):
        job = job_of(people["owner"], status)
        if action == "page":
            response = client.get(reverse("admin:bourbon_jobs_job_change", args=[job.pk]))
        else:
            response = client.post(reverse(f"admin:bourbon_jobs_job_{action}", args=[job.pk]))
        got[action], wanted[action] = response.status_code, expected_admin(kind, status, action)
    assert got == wanted


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind != "stranger"])
def test_the_dashboard_and_its_stream_need_view_job(people: dict[str, User], kind: str) -> None:
    client = Client()
    client.force_login(people[kind])
    expected = 200 if kind in SEES - {"owner"} else 403
    for name in ("admin:bourbon_jobs_job_dashboard", "admin:bourbon_jobs_job_dashboard_events"):
        response: Any = client.get(reverse(name))
        close_response(response)
        assert response.status_code == expected, name
