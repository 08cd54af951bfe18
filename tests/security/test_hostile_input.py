"""Hostile input gets a clear 4xx and stores nothing: deep JSON, crafted cursors (issue 12)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from django_bourbon_jobs.api.parsers import nesting_depth
from django_bourbon_jobs.models import Job

API = "/api/jobs/"

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice() -> APIClient:
    client = APIClient()
    client.force_authenticate(User.objects.create_user("alice"))
    return client


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def post_raw(client: APIClient, body: str) -> Any:
    return client.generic("POST", API, body, content_type="application/json")


@pytest.mark.parametrize("depth", [33, 960, 5000])
def test_a_payload_nested_deeper_than_the_limit_is_400_and_stores_nothing(
    alice: APIClient, depth: int
) -> None:
    body = '{"task": "echo", "payload": ' + "[" * depth + "1" + "]" * depth + "}"
    response = post_raw(alice, body)
    assert response.status_code == 400, response.content
    assert "nested more than 32 levels" in response.json()["detail"]
    assert not Job.objects.exists()


def test_a_payload_at_the_limit_is_accepted(alice: APIClient) -> None:
    response = post_raw(alice, json.dumps({"task": "echo", "payload": nested(32)}))
    assert response.status_code == 202, response.content
    assert Job.objects.get().args == [nested(32)]


def test_the_limit_is_a_setting(alice: APIClient, settings: Any) -> None:
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "API_MAX_PAYLOAD_DEPTH": 3}
    assert post_raw(alice, json.dumps({"task": "echo", "payload": nested(4)})).status_code == 400
    assert post_raw(alice, json.dumps({"task": "echo", "payload": nested(3)})).status_code == 202


@pytest.mark.parametrize(
    "text, depth",
    [('{"a": "[[[["}', 1), ('{"a": "\\"[[", "b": [{}]}', 3), ("[]", 1), ('"x"', 0), ('{"k": [[1], [2]]}', 3)],
)
def test_brackets_inside_strings_do_not_count(text: str, depth: int) -> None:
    assert nesting_depth(text.encode()) == depth


def cursor(position: str, reverse: int = 0) -> str:
    return base64.b64encode(f"o=0&r={reverse}&p={position}".encode()).decode()


@pytest.mark.parametrize(
    "value",
    [cursor("not-a-time"), cursor("2026-13-45 99:99:99"), cursor("\x00"), cursor("x", reverse=7), "ÿ"],
    ids=["words", "impossible-date", "nul", "bad-reverse", "not-ascii"],
)
def test_a_crafted_pagination_cursor_is_400(alice: APIClient, value: str) -> None:
    response = alice.get(API, {"cursor": value})
    assert response.status_code == 400, response.content
    assert "Invalid cursor" in response.json()["cursor"][0]


def test_a_real_cursor_still_pages(alice: APIClient) -> None:
    for n in range(3):
        assert post_raw(alice, json.dumps({"task": "echo", "payload": n})).status_code == 202
    first = alice.get(API, {"page_size": 2}).json()
    second = alice.get(first["next"]).json()
    assert len(first["results"]) == 2 and len(second["results"]) == 1


@pytest.mark.parametrize("param", ["task_path", "queue_name", "exception", "q", "status"])
def test_a_nul_in_an_admin_filter_gives_an_empty_list_with_a_message(admin_client: Any, param: str) -> None:
    Job.objects.create(
        task_path="tests.tasks.echo", run_after="2026-01-01T00:00Z", enqueued_at="2026-01-01T00:00Z"
    )
    for page in ("/admin/bourbon_jobs/job/", "/admin/bourbon_jobs/job/failures/"):
        response = admin_client.get(page, {param: "a\x00b"})
        assert response.status_code == 200, page
        assert "held a NUL character" in response.content.decode()
        assert "tests.tasks.echo" not in response.content.decode().split("<tbody>")[-1]


def test_deep_and_big_payloads_render_on_their_admin_page(admin_client: Any) -> None:
    """Deep JSON is shown compact (no recursion, no square-of-depth text); big JSON is cut, with a link."""
    when = "2026-01-01T00:00Z"
    deep = Job.objects.create(
        task_path="tests.tasks.echo", run_after=when, enqueued_at=when, args=nested(800)
    )
    big = [[list(range(50))] * 400]
    wide = Job.objects.create(task_path="tests.tasks.echo", run_after=when, enqueued_at=when, args=big)
    for job in (deep, wide):
        page = admin_client.get(f"/admin/bourbon_jobs/job/{job.pk}/change/")
        assert page.status_code == 200
        assert len(page.content) < 200_000, "the page stays small"
        whole = admin_client.get(f"/admin/bourbon_jobs/job/{job.pk}/json/payload/")
        assert whole.status_code == 200 and whole["Content-Type"] == "application/json"
        assert json.loads(whole.content) == {"args": job.args, "kwargs": {}}
    assert "[[[[[[[[" in admin_client.get(f"/admin/bourbon_jobs/job/{deep.pk}/change/").content.decode()
    assert "Show all (" in admin_client.get(f"/admin/bourbon_jobs/job/{wide.pk}/change/").content.decode()
    assert admin_client.get(f"/admin/bourbon_jobs/job/{deep.pk}/json/nope/").status_code == 404
