"""The workflows API: status with steps, cancel, retry, live events (SSE, WebSocket); owners as for jobs."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient
from websockets.exceptions import InvalidStatus

from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.workflows import Workflow, chain
from tests import workflow_tasks as wt
from tests.conftest import RedisServer, drain, needs_redis_server, redis_settings
from tests.streams import EventReader, Uvicorn
from tests.test_sse import session_cookie, start_worker
from tests.test_websocket import messages, socket

API = "/api/jobs/workflows/"

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def user_with(name: str, *codenames: str) -> User:
    user = User.objects.create_user(name)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return User.objects.get(pk=user.pk)


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice")


@pytest.fixture
def bob() -> User:
    return User.objects.create_user("bob")


def diamond(user: User | None, breaks: bool = False) -> Any:
    wf = Workflow("diamond")
    wf.add("a", wt.add_one, 1)
    if breaks:
        wf.add("b", wt.breaks, "x", after=["a"])
    else:
        wf.add("b", wt.double, after=["a"])
    wf.add("c", wt.add_one, after=["a"])
    wf.add("d", wt.total, None, after=["b", "c"])
    return wf.dispatch(dispatched_by=user)


def test_the_owner_reads_a_workflow_with_its_steps(alice: User) -> None:
    run = diamond(alice)
    body = client_for(alice).get(f"{API}{run.id}/").json()
    assert (body["workflow_id"], body["name"], body["status"]) == (run.id, "diamond", "running")
    assert body["progress"] == {"finished": 0, "failed": 0, "total": 4}
    assert body["status_url"].endswith(f"{API}{run.id}/") and body["events_url"].endswith("/events/")
    steps = {step["name"]: step for step in body["steps"]}
    assert list(steps) == ["a", "b", "c", "d"]
    assert (steps["a"]["status"], steps["d"]["status"]) == ("queued", "waiting")
    assert steps["d"]["after"] == ["b", "c"]
    assert steps["b"]["job_id"] == run.steps["b"].id
    job = client_for(alice).get(steps["b"]["status_url"]).json()
    assert job["job_id"] == run.steps["b"].id
    drain()
    body = client_for(alice).get(f"{API}{run.id}/").json()
    assert body["status"] == "succeeded" and body["progress"]["finished"] == 4
    assert {step["status"] for step in body["steps"]} == {"succeeded"}
    assert Job.objects.filter(workflow_id=run.id, dispatched_by=alice).count() == 4


def test_others_see_nothing_unless_they_may_view_all(alice: User, bob: User) -> None:
    run = diamond(alice)
    assert client_for(bob).get(f"{API}{run.id}/").status_code == 404
    assert client_for(bob).get(API).json()["results"] == []
    assert client_for(None).get(f"{API}{run.id}/").status_code in (401, 403)
    viewer = user_with("viewer", "view_job")
    assert client_for(viewer).get(f"{API}{run.id}/").status_code == 200
    assert [w["workflow_id"] for w in client_for(alice).get(API).json()["results"]] == [run.id]
    for missing in (uuid.uuid4(), "not-an-id"):
        assert client_for(alice).get(f"{API}{missing}/").status_code == 404


def test_cancel_through_the_api_and_who_may(alice: User, bob: User) -> None:
    run = diamond(alice)
    assert client_for(bob).post(f"{API}{run.id}/cancel/").status_code == 404
    viewer = user_with("viewer", "view_job")
    assert client_for(viewer).post(f"{API}{run.id}/cancel/").status_code == 403
    response = client_for(alice).post(f"{API}{run.id}/cancel/")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    assert {step["status"] for step in response.json()["steps"]} == {"cancelled"}
    again = client_for(alice).post(f"{API}{run.id}/cancel/")
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]
    other = diamond(alice)
    canceller = user_with("canceller", "view_job", "cancel_job")
    assert client_for(canceller).post(f"{API}{other.id}/cancel/").status_code == 200


def test_retry_through_the_api(alice: User) -> None:
    run = diamond(alice, breaks=True)
    assert client_for(alice).post(f"{API}{run.id}/retry/").status_code == 409
    drain()
    assert client_for(alice).get(f"{API}{run.id}/").json()["status"] == "failed"
    response = client_for(alice).post(f"{API}{run.id}/retry/")
    assert response.status_code == 202
    steps = {step["name"]: step["status"] for step in response.json()["steps"]}
    assert steps == {"a": "succeeded", "b": "queued", "c": "succeeded", "d": "waiting"}
    retrier = user_with("retrier", "view_job")
    assert client_for(retrier).post(f"{API}{run.id}/retry/").status_code == 403


def test_the_schema_documents_the_workflow_routes(alice: User) -> None:
    schema = client_for(alice).get("/api/jobs/schema/", HTTP_ACCEPT="application/json").json()
    paths = set(schema["paths"])
    assert {
        "/api/jobs/workflows/",
        "/api/jobs/workflows/{id}/",
        "/api/jobs/workflows/{id}/cancel/",
        "/api/jobs/workflows/{id}/retry/",
        "/api/jobs/workflows/{id}/events/",
    } <= paths


def test_events_follow_a_workflow_to_its_end(live_server: Any, alice: User, monkeypatch: Any) -> None:
    from django_bourbon_jobs.api.workflows import WorkflowViewSet

    monkeypatch.setattr(WorkflowViewSet, "stream_poll_interval", 0.05)
    run = chain((wt.add_one, 1), wt.add_one, wt.double).dispatch(dispatched_by=alice)
    cookie = session_cookie(alice)
    reader = EventReader(live_server.url, f"{API}{run.id}/events/", cookie)
    assert reader.response.status == 200
    first = [reader.next_event() for _ in range(4)]
    assert [event["event"] for event in first] == ["step", "step", "step", "workflow"]
    assert [event["data"]["status"] for event in first] == ["queued", "waiting", "waiting", "running"]
    worker = start_worker()
    events = []
    while (event := reader.next_event()) is not None:
        events.append(event)
    reader.close()
    worker.join(10)
    final = events[-1]
    assert (final["event"], final["data"]["status"], final["data"]["progress"]["finished"]) == (
        "workflow",
        "succeeded",
        3,
    )
    last_of_step = {}
    for event in [*first, *events]:
        if event["event"] == "step":
            last_of_step[event["data"]["name"]] = event["data"]["status"]
    assert last_of_step == dict.fromkeys(["1-add_one", "2-add_one", "3-double"], "succeeded")
    done = EventReader(live_server.url, f"{API}{run.id}/events/", cookie, last_event_id=final["id"])
    assert done.response.status == 204
    done.close()
    stranger = User.objects.create_user("mallory")
    refused = EventReader(live_server.url, f"{API}{run.id}/events/", session_cookie(stranger))
    assert refused.response.status == 404
    refused.close()


@needs_redis_server
def test_with_redis_a_workflows_events_arrive_by_pub_sub(
    live_server: Any, alice: User, redis_server: RedisServer, monkeypatch: Any
) -> None:
    """No poll and no heartbeat for a minute: only Redis messages (its steps' and its own) wake the stream."""
    from django_bourbon_jobs.api.workflows import WorkflowViewSet

    monkeypatch.setattr(WorkflowViewSet, "stream_poll_interval", 60.0)
    monkeypatch.setattr(WorkflowViewSet, "stream_heartbeat_interval", 60.0)
    with redis_settings(redis_server):
        run = chain((wt.add_one, 1), wt.add_one).dispatch(dispatched_by=alice)
        reader = EventReader(live_server.url, f"{API}{run.id}/events/", session_cookie(alice), timeout=10)
        assert [reader.next_event()["event"] for _ in range(3)] == ["step", "step", "workflow"]
        worker = start_worker()
        events = list(iter(reader.next_event, None))
        worker.join(10)
        reader.close()
    assert (events[-1]["event"], events[-1]["data"]["status"]) == ("workflow", "succeeded")
    assert {e["data"]["name"]: e["data"]["status"] for e in events if e["event"] == "step"}["2-add_one"] == (
        "succeeded"
    )


def test_a_workflows_events_over_websocket(alice: User, bob: User, tmp_path: Path) -> None:
    server = Uvicorn()
    try:
        run = chain((wt.add_one, 1), wt.add_one).dispatch(dispatched_by=alice)
        drain()
        with socket(server, f"/ws/workflows/{run.id}/", alice) as ws:
            received = messages(ws)
        kinds = [m["event"] for m in received if m["event"] != "heartbeat"]
        assert kinds == ["step", "step", "workflow"]
        assert received[-1]["data"]["status"] == "succeeded"
        with pytest.raises(InvalidStatus) as refused:
            socket(server, f"/ws/workflows/{run.id}/", bob)
        assert refused.value.response.status_code == 403, "refused before the handshake, as for a job"
    finally:
        server.stop()


def test_step_jobs_are_visible_through_the_jobs_api_to_their_owner(alice: User, bob: User) -> None:
    run = diamond(alice)
    job_id = run.steps["d"].id
    assert client_for(alice).get(f"/api/jobs/{job_id}/").json()["status"] == JobStatus.WAITING
    assert client_for(bob).get(f"/api/jobs/{job_id}/").status_code == 404
    waiting = json.loads(client_for(alice).get("/api/jobs/?status=waiting").content)["results"]
    assert job_id in {job["job_id"] for job in waiting}
