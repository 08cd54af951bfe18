"""Live status over Server-Sent Events, read from a real HTTP server while a worker runs the job."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from django_bourbon_jobs import cancel
from django_bourbon_jobs.api.events import JobStream
from django_bourbon_jobs.api.views import JobViewSet
from django_bourbon_jobs.events import redis_channels
from django_bourbon_jobs.events.sse import as_sse
from django_bourbon_jobs.models import Job
from django_bourbon_jobs.testing import drain
from tests.conftest import RedisServer, needs_redis_server, redis_settings, wait_until
from tests.factories import API, dispatched_id
from tests.streams import EventReader, Uvicorn

pytestmark = pytest.mark.django_db(transaction=True)  # the streams read on threads of their own


@pytest.fixture
def fast_stream(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    monkeypatch.setattr(JobViewSet, "stream_poll_interval", 0.05)
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "PROGRESS_INTERVAL": 0.01}


def session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def start_worker() -> threading.Thread:
    def run() -> None:
        try:
            drain()
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_events_follow_a_job_to_the_end_and_a_reconnect_misses_nothing(
    live_server: Any, alice: User, tmp_path: Path, fast_stream: None
) -> None:
    job_id = dispatched_id(alice, task="progress_steps", payload={"dir": str(tmp_path), "steps": 2})
    cookie = session_cookie(alice)
    reader = EventReader(live_server.url, f"{API}{job_id}/events/", cookie)
    assert reader.response.status == 200
    assert reader.response.getheader("Content-Type").startswith("text/event-stream")
    assert reader.response.getheader("Cache-Control") == "no-cache"

    queued = reader.next_event()
    assert queued is not None
    assert (queued["event"], queued["data"]["status"], queued["data"]["job_id"]) == (
        "status",
        "queued",
        job_id,
    )
    worker = start_worker()
    running = reader.next_event()
    assert running is not None
    assert (running["event"], running["data"]["status"]) == ("status", "running")

    (tmp_path / "go1").touch()
    progress = reader.next_event()
    assert progress is not None
    assert progress["event"] == "progress"
    assert progress["data"]["progress"]["current"] == 1
    assert progress["data"]["progress"]["message"] == "step 1"

    (tmp_path / "go2").touch()
    events = []
    while (event := reader.next_event()) is not None:
        events.append(event)
    reader.close()
    worker.join(10)
    final = events[-1]
    assert (final["event"], final["data"]["status"]) == ("status", "succeeded")
    assert final["data"]["result"] == {"steps": 2}
    assert final["data"]["progress"]["current"] == 2
    assert len({e["id"] for e in [queued, running, progress, *events]}) == 2 + 1 + len(events)

    # A client that lost the connection after the progress event gets the final state, then the end.
    again = EventReader(live_server.url, f"{API}{job_id}/events/", cookie, last_event_id=progress["id"])
    assert [again.next_event(), again.next_event()] == [final, None]
    again.close()
    # One that has the final state is told to stop reconnecting (204, per the SSE spec).
    done = EventReader(live_server.url, f"{API}{job_id}/events/", cookie, last_event_id=final["id"])
    assert done.response.status == 204
    done.close()


def test_under_asgi_each_event_is_sent_as_it_happens(alice: User) -> None:
    """Django would otherwise read the whole (synchronous) stream before sending any of it."""
    server = Uvicorn()
    try:
        job_id = dispatched_id(alice, task="echo", payload="over asgi")
        reader = EventReader(server.url, f"{API}{job_id}/events/", session_cookie(alice))
        assert reader.response.getheader("Content-Type").startswith("text/event-stream")
        queued = reader.next_event()
        assert queued is not None and queued["data"]["status"] == "queued"
        assert Job.objects.get(pk=job_id).status == "queued", "the first event came while the job waited"
        worker = start_worker()
        events = []
        while (event := reader.next_event()) is not None:
            events.append(event)
        reader.close()
        worker.join(10)
        assert events and events[-1]["data"]["status"] == "succeeded"
        assert events[-1]["data"]["result"] == "over asgi"
    finally:
        server.stop()


@needs_redis_server
def test_under_asgi_a_client_that_leaves_gives_up_its_subscription(
    alice: User, redis_server: RedisServer
) -> None:
    server = Uvicorn(DJANGO_SETTINGS_MODULE="tests.settings_redis", BOURBON_TEST_REDIS_URL=redis_server.url)
    try:
        with redis_settings(redis_server):
            job_id = dispatched_id(alice, task="echo", payload="left early")
            channel = redis_channels.job_channel(job_id)
            reader = EventReader(server.url, f"{API}{job_id}/events/", session_cookie(alice))
            queued = reader.next_event()
            assert queued is not None and queued["data"]["status"] == "queued"
            assert redis_server.subscribers(channel) == 1
            reader.close()
            assert cancel(job_id), "a change the stream wakes for after its client has gone"
            wait_until(lambda: redis_server.subscribers(channel) == 0, timeout=15, message="unsubscribed")
    finally:
        server.stop()


def test_heartbeats_keep_an_idle_stream_alive_until_its_time_is_up(
    live_server: Any, alice: User, monkeypatch: pytest.MonkeyPatch, fast_stream: None
) -> None:
    monkeypatch.setattr(JobViewSet, "stream_heartbeat_interval", 0.1)
    monkeypatch.setattr(JobViewSet, "stream_max_seconds", 0.6)
    job_id = dispatched_id(alice, task="echo", payload=None)
    Job.objects.filter(pk=job_id).update(due_at=timezone.now() + timezone.timedelta(hours=1))
    reader = EventReader(live_server.url, f"{API}{job_id}/events/", session_cookie(alice))
    blocks = list(reader.blocks())  # ends on its own after stream_max_seconds
    reader.close()
    assert blocks[0] == {"retry": "2000"}
    assert blocks[1]["event"] == "status"
    heartbeats = [block for block in blocks[2:] if block == {"comments": ["heartbeat"]}]
    assert len(heartbeats) >= 2
    assert len(blocks) == 2 + len(heartbeats)  # no event: nothing changed


def test_the_stream_holds_no_connection_between_polls(alice: User) -> None:
    job = Job.objects.create(
        task_path="tests.tasks.echo",
        run_after=timezone.now(),
        enqueued_at=timezone.now(),
        dispatched_by=alice,
    )
    stream = as_sse(
        JobStream(
            Job.objects.all(), job.pk, lambda j: {"status": j.status, "p": j.progress}, poll_interval=0.01
        )
    )
    assert next(stream).startswith("retry:")
    assert next(stream).startswith("event: status")
    assert connection.connection is None
    Job.objects.filter(pk=job.pk).update(progress={"current": 1})
    assert next(stream).startswith("event: progress")
    assert connection.connection is None
    Job.objects.filter(pk=job.pk).update(status="succeeded")
    assert next(stream).startswith("event: status")
    assert list(stream) == []
    Job.objects.all().delete()


def test_a_job_removed_mid_stream_ends_it(alice: User) -> None:
    job = Job.objects.create(
        task_path="tests.tasks.echo",
        run_after=timezone.now(),
        enqueued_at=timezone.now(),
        dispatched_by=alice,
    )
    stream = as_sse(JobStream(Job.objects.all(), job.pk, lambda j: {"status": j.status}, poll_interval=0.01))
    next(stream), next(stream)
    job.delete()
    assert next(stream).startswith("event: gone")
    assert list(stream) == []


def test_errors_are_one_error_event(alice: User) -> None:
    bob = User.objects.create_user("bob")
    job_id = dispatched_id(alice, task="echo", payload=None)
    client = APIClient()
    client.force_authenticate(bob)
    response = client.get(f"{API}{job_id}/events/", HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 404
    assert response.content.startswith(b"event: error\ndata: {")
    response = client.get(f"{API}{job_id}/events/", HTTP_ACCEPT="application/json")
    assert response.status_code == 404
    assert response.json() == {"detail": "No Job matches the given query."}


def test_cooperative_cancel_through_the_api(alice: User, tmp_path: Path, fast_stream: None) -> None:
    started = tmp_path / "started"
    job_id = dispatched_id(alice, task="stops_when_asked", payload={"started": str(started)})
    worker = start_worker()
    wait_until(started.exists, message="the job to start")
    client = APIClient()
    client.force_authenticate(alice)
    response = client.post(f"{API}{job_id}/cancel/")
    assert response.status_code == 202
    assert response.json()["cancel_requested"] is True
    worker.join(10)
    body = client.get(f"{API}{job_id}/").json()
    assert (body["status"], body["errors"]) == ("cancelled", [])


# With Redis: the stream waits on the job's channel, and polls only while Redis is down.


@needs_redis_server
def test_with_redis_changes_arrive_by_pub_sub_not_by_polling(
    live_server: Any, alice: User, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No poll and no heartbeat for a minute: only a Redis message can wake the stream in time.
    monkeypatch.setattr(JobViewSet, "stream_poll_interval", 60.0)
    monkeypatch.setattr(JobViewSet, "stream_heartbeat_interval", 60.0)
    with redis_settings(redis_server):
        cookie = session_cookie(alice)
        ran = dispatched_id(alice, task="echo", payload=None)
        reader = EventReader(live_server.url, f"{API}{ran}/events/", cookie, timeout=10)
        assert status_of(reader.next_event()) == "queued"
        worker = start_worker()
        statuses = [status_of(event) for event in iter(reader.next_event, None)]
        worker.join(10)
        assert statuses[-1] == "succeeded", statuses

        cancelled = dispatched_id(alice, task="echo", payload=None)
        reader = EventReader(live_server.url, f"{API}{cancelled}/events/", cookie, timeout=10)
        assert status_of(reader.next_event()) == "queued"
        client = APIClient()
        client.force_authenticate(alice)
        assert client.post(f"{API}{cancelled}/cancel/").status_code == 200
        assert [status_of(event) for event in iter(reader.next_event, None)] == ["cancelled"]


@needs_redis_server
def test_redis_stopped_mid_stream_means_polling_then_pub_sub_again(
    live_server: Any,
    alice: User,
    tmp_path: Path,
    redis_server: RedisServer,
    fast_stream: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="django_bourbon_jobs.events")
    monkeypatch.setattr(redis_channels, "outages", redis_channels.Outages())
    monkeypatch.setattr(JobViewSet, "stream_heartbeat_interval", 60.0)
    with redis_settings(redis_server):
        job_id = dispatched_id(alice, task="progress_steps", payload={"dir": str(tmp_path), "steps": 2})
        reader = EventReader(live_server.url, f"{API}{job_id}/events/", session_cookie(alice), timeout=10)
        assert status_of(reader.next_event()) == "queued"
        channel = redis_channels.job_channel(job_id)
        assert redis_server.subscribers(channel) == 1

        redis_server.stop()
        worker = start_worker()
        assert status_of(reader.next_event()) == "running"  # polled: Redis is down
        (tmp_path / "go1").touch()
        progress = reader.next_event()
        assert progress is not None and progress["data"]["progress"]["current"] == 1

        redis_server.start()
        wait_until(lambda: redis_server.subscribers(channel) == 1, timeout=15, message="the stream back")
        # Listening again, the stream no longer polls: only Redis can deliver the rest in time.
        (tmp_path / "go2").touch()
        rest = list(iter(reader.next_event, None))
        worker.join(10)
    assert status_of(rest[-1]) == "succeeded"
    assert rest[-1]["data"]["progress"]["current"] == 2
    events = [r.getMessage() for r in caplog.records if r.name == "django_bourbon_jobs.events"]
    logged = [m for m in events if "job events" in m]  # the readers' outage (the publisher logs its own)
    assert len(logged) == 2, logged  # the outage once, however often the stream retried; its end once
    assert "unavailable" in logged[0] and "is back" in logged[1]


def status_of(event: dict[str, Any] | None) -> str:
    assert event is not None, "the stream ended"
    return str(event["data"]["status"])
