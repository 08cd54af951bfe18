"""The API answers as its OpenAPI schema says, for two users attacking each other's jobs.

schemathesis generates requests (valid and invalid) from our own schema and sends them
through Django's WSGI application as alice or bob, at made-up ids, at the caller's own
jobs and at the other user's, in every state. Every answer must be documented: no
``5xx``, a status code the schema lists, its content type, a body matching its schema.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.wsgi import get_wsgi_application
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from django_bourbon_jobs.api.views import JobViewSet
from django_bourbon_jobs.models import Job, JobStatus

pytestmark = pytest.mark.django_db(transaction=True)  # the WSGI handler closes connections
SCHEMA = schemathesis.openapi.from_wsgi("/api/jobs/schema/", get_wsgi_application())
OPERATIONS = [
    result.ok()
    for result in SCHEMA.get_all_operations()
    if result.ok().path.startswith("/api/jobs/") and not result.ok().path.endswith("/schema/")
]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
STATES = [JobStatus.QUEUED, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED]


def basic(name: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:pw".encode()).decode()}


@pytest.fixture(autouse=True)
def short_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream of a queued job would run 5 minutes (tests/settings.py makes passwords fast to hash)."""
    monkeypatch.setattr(JobViewSet, "stream_max_seconds", 0.05)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op.method.upper()} {op.path}")
def test_every_answer_is_documented(operation: Any, mode: GenerationMode) -> None:
    users = {name: User.objects.create_user(name, password="pw") for name in ("alice", "bob")}
    now = timezone.now()
    later = now + timezone.timedelta(hours=1)
    jobs = {
        (name, status): Job.objects.create(
            task_path="tests.tasks.echo",
            due_at=later if status == JobStatus.QUEUED else now,  # stays queued: no worker here
            enqueued_at=now,
            dispatched_by=user,
            status=status,
        )
        for name, user in users.items()
        for status in STATES
    }

    @given(
        case=operation.as_strategy(mode),
        caller=st.sampled_from(["alice", "bob"]),
        owner=st.sampled_from(["alice", "bob", None]),
        status=st.sampled_from(STATES),
    )
    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any, caller: str, owner: str | None, status: str) -> None:
        if case.path_parameters and "id" in case.path_parameters and owner is not None:
            case.path_parameters["id"] = str(jobs[(owner, status)].pk)
        response = case.call(headers={**(case.headers or {}), **basic(caller)})
        case.validate_response(response, checks=CHECKS)
        if owner is not None and owner != caller and "{id}" in operation.path:
            assert response.status_code == 404, (caller, owner, status, response.status_code)

    check()
