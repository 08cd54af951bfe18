"""Schema-based fuzzing: schemathesis generates requests (valid and not) from our own OpenAPI schema.

Every operation is called as an authenticated user, on made-up ids, on the user's
own job and on another user's job. No request may produce a ``5xx``, another
user's job must stay ``404``, and JSON answers must be JSON.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from schemathesis.generation.modes import GenerationMode

from django_bourbon_jobs.models import Job

SCHEMA = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
OPERATIONS = [
    result.ok()
    for result in SCHEMA.get_all_operations()
    if result.ok().path.startswith("/api/jobs/") and not result.ok().path.endswith("/schema/")
]
TASK_NAMES = st.sampled_from([None, "echo", "always_fails", "tests.tasks.echo", "tests.tasks.not_a_task"])
TARGETS = st.sampled_from(["generated", "own", "other"])
FORWARDED_HEADERS = {"content-type", "last-event-id"}


def request_kwargs(case: Any) -> tuple[str, str, dict[str, Any]]:
    sent = case.as_transport_kwargs(base_url="http://testserver")
    path = urlsplit(sent["url"]).path
    extra: dict[str, Any] = {}
    headers = {k.lower(): v for k, v in sent["headers"].items() if k.lower() in FORWARDED_HEADERS}
    if "last-event-id" in headers:
        extra["HTTP_LAST_EVENT_ID"] = headers["last-event-id"]
    if sent.get("params"):
        extra["QUERY_STRING"] = urlencode(sent["params"], doseq=True)
    if "json" in sent:
        extra["data"] = json.dumps(sent["json"])
        extra["content_type"] = "application/json"
    elif sent.get("data") is not None:
        extra["data"] = sent["data"]
        extra["content_type"] = headers.get("content-type", "application/octet-stream")
    return sent["method"], path, extra


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op.method.upper()} {op.path}")
def test_no_request_makes_a_5xx(db: None, operation: Any, mode: GenerationMode) -> None:
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    now = timezone.now()
    jobs = {
        who: Job.objects.create(
            task_path="tests.tasks.echo", run_after=now, enqueued_at=now, dispatched_by=user, status=status
        )
        for who, user, status in [("own", alice, "failed"), ("other", bob, "failed")]
    }
    client = APIClient()
    client.force_authenticate(alice)

    @given(case=operation.as_strategy(mode), task=TASK_NAMES, target=TARGETS)
    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any, task: str | None, target: str) -> None:
        if task is not None and isinstance(case.body, dict):
            case.body["task"] = task
        if case.path_parameters and "id" in case.path_parameters and target != "generated":
            case.path_parameters["id"] = str(jobs[target].pk)
        method, path, extra = request_kwargs(case)
        response = client.generic(method, path, **extra)  # a stream is left unread
        assert response.status_code < 500, (method, path, extra, response.status_code)
        if target == "other" and "{id}" in operation.path:
            assert response.status_code == 404, (method, path, response.status_code)
        if not response.streaming and response.get("Content-Type", "").startswith("application/json"):
            json.loads(response.content)

    check()
