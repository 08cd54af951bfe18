"""Job events for live readers: Redis pub/sub with a database-polling fallback, and who announces what.

Against a ``redis-server`` of the test's own, which the tests stop and start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection, transaction
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from django_bourbon_jobs.events import redis_channels, subscribe
from django_bourbon_jobs.events.subscribe import JobEvents
from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.operations import request_cancel
from tests.conftest import RedisServer, needs_redis_server, redis_settings, wait_until
from tests.factories import make_job
from tests.test_admin import FAILURES, JOBS, action

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_outage_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outages are remembered per process (logged once); each test starts with none."""
    monkeypatch.setattr(redis_channels, "outages", redis_channels.Outages())


def waits_for_seconds(events: JobEvents, seconds: float) -> list[bool]:
    """Call ``wait()`` again and again for ``seconds``: what a stream does while nothing happens."""
    results, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        results.append(events.wait(end - time.monotonic()))
    return results


def test_without_redis_wait_says_read_once_per_poll_interval() -> None:
    with JobEvents(None, poll_interval=0.2) as events:
        assert not events.listening
        assert events.wait(0.05) is False  # a heartbeat's timeout, before the poll is due
        started = time.monotonic()
        assert events.wait(5) is True
        assert 0.1 <= time.monotonic() - started < 1.0


@needs_redis_server
def test_a_message_wakes_the_reader_and_a_burst_is_one_wake_up(redis_server: RedisServer) -> None:
    publisher = redis.Redis(port=redis_server.port)
    with redis_settings(redis_server), JobEvents.for_job("abc", poll_interval=60) as events:
        assert events.listening
        # Subscribed (and acknowledged) on entering: nothing published from now on is missed.
        assert redis_server.subscribers(redis_channels.job_channel("abc")) == 1
        assert events.wait(0.1) is False
        burst = publisher.pipeline(transaction=False)  # one event-loop turn: one write to the reader
        for status in ("running", "running", "succeeded"):
            burst.publish(redis_channels.job_channel("abc"), json.dumps({"status": status}))
        burst.execute()
        started = time.monotonic()
        assert events.wait(10) is True
        assert time.monotonic() - started < 2
        assert events.wait(0.2) is False  # the burst was taken in one go
        publisher.publish(redis_channels.job_channel("other"), "{}")
        assert events.wait(0.2) is False


@needs_redis_server
def test_redis_down_means_polling_logged_once_then_redis_again(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="django_bourbon_jobs.events")
    channel = redis_channels.job_channel("abc")
    with redis_settings(redis_server), JobEvents.for_job("abc", poll_interval=0.1) as events:
        redis_server.stop()
        assert events.wait(10) is True  # the connection is gone: read the database now
        assert not events.listening
        # Polling meanwhile, and trying to subscribe again (0.1 s, 0.2 s, 0.4 s ... apart).
        assert waits_for_seconds(events, 1.0).count(True) >= 3
        lost = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(lost) == 1, [r.getMessage() for r in caplog.records]

        redis_server.start()
        wait_until(lambda: events.wait(0.05) and events.listening, timeout=15, message="subscribed again")
        assert redis_server.subscribers(channel) == 1
        assert caplog.records[:-1] == lost
        assert caplog.records[-1].getMessage() == "Redis 'jobs' is back; job events come from pub/sub again"
        redis.Redis(port=redis_server.port).publish(channel, "{}")
        assert events.wait(10) is True
        assert events.wait(0.2) is False  # and no more polling


@needs_redis_server
def test_redis_unreachable_from_the_start_means_polling_until_it_answers(redis_server: RedisServer) -> None:
    redis_server.stop()
    with redis_settings(redis_server), JobEvents.for_job("abc", poll_interval=0.1) as events:
        assert not events.listening
        assert events.wait(5) is True
        redis_server.start()
        wait_until(lambda: events.wait(0.05) and events.listening, timeout=15, message="subscribed")


# Changes made outside a worker are announced too, once committed.


def job_events_from(pubsub: Any, expected: int = 1, within: float = 5.0) -> list[dict[str, Any]]:
    """The events published until ``expected`` have arrived (or ``within`` passed), and 0.2 s more."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.05)
        if message:
            seen.append(json.loads(message["data"]))
        if len(seen) >= expected:
            deadline = min(deadline, time.monotonic() + 0.2)
    return seen


@pytest.fixture
def all_job_events(redis_server: RedisServer) -> Any:
    pubsub = redis.Redis(port=redis_server.port).pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe(redis_channels.job_channel("*"))
    wait_until(lambda: redis_server.pattern_subscriptions() == 1, message="subscribed")
    with redis_settings(redis_server):
        yield pubsub
    pubsub.close()


@needs_redis_server
def test_api_cancel_and_retry_announce_the_new_state(all_job_events: Any, django_user_model: Any) -> None:
    alice = django_user_model.objects.create_user("alice")
    client = APIClient()
    client.force_authenticate(alice)
    queued, running = make_job(dispatched_by=alice), make_job(dispatched_by=alice, status=JobStatus.RUNNING)

    assert client.post(f"/api/jobs/{queued.pk}/cancel/").status_code == 200
    assert job_events_from(all_job_events) == [
        {"job_id": str(queued.pk), "status": "cancelled", "progress": None}
    ]
    assert client.post(f"/api/jobs/{running.pk}/cancel/").status_code == 202  # asked to stop
    assert job_events_from(all_job_events) == [
        {"job_id": str(running.pk), "status": "running", "progress": None}
    ]
    assert client.post(f"/api/jobs/{queued.pk}/retry/").status_code == 202
    assert job_events_from(all_job_events) == [
        {"job_id": str(queued.pk), "status": "queued", "progress": None}
    ]


@needs_redis_server
def test_a_cancel_is_announced_only_once_its_transaction_commits(all_job_events: Any) -> None:
    job = make_job(status=JobStatus.RUNNING)
    with transaction.atomic():
        assert request_cancel(str(job.pk)) == "requested"
        assert job_events_from(all_job_events, expected=0, within=0.3) == []
    assert [event["job_id"] for event in job_events_from(all_job_events)] == [str(job.pk)]
    with pytest.raises(RuntimeError), transaction.atomic():
        Job.objects.filter(pk=job.pk).update(cancel_requested_at=None)
        request_cancel(str(job.pk))
        raise RuntimeError("rolled back")
    assert job_events_from(all_job_events, expected=0, within=0.3) == []


@needs_redis_server
def test_admin_retry_and_cancel_announce_the_jobs_they_change(all_job_events: Any, admin_client: Any) -> None:
    failed = [make_job(status=JobStatus.FAILED, finished_at=timezone.now()) for _ in range(2)]
    queued = make_job()
    action(admin_client, FAILURES, "retry_jobs", failed[:1], select_across=True)
    events = job_events_from(all_job_events, expected=2)
    assert sorted(e["job_id"] for e in events) == sorted(str(job.pk) for job in failed)
    assert {e["status"] for e in events} == {"queued"}

    action(admin_client, JOBS, "cancel_jobs", [queued])
    assert job_events_from(all_job_events) == [
        {"job_id": str(queued.pk), "status": "cancelled", "progress": None}
    ]
    admin_client.post(reverse("admin:bourbon_jobs_job_retry", args=[queued.pk]))
    assert job_events_from(all_job_events) == [
        {"job_id": str(queued.pk), "status": "queued", "progress": None}
    ]


@needs_redis_server
def test_two_namespaces_on_one_redis_never_hear_each_other(redis_server: RedisServer) -> None:
    """Redis pub/sub ignores database numbers; the namespace keeps two projects (or test runs) apart."""
    with redis_settings(redis_server):
        derived = redis_channels.namespace()
        assert connection.settings_dict["NAME"] in derived
        with override_settings(BOURBON_JOBS={**settings.BOURBON_JOBS, "REDIS_NAMESPACE": "project-b"}):
            other_channel = redis_channels.job_channel("abc")
            assert other_channel.startswith("project-b:")
        with JobEvents.for_job("abc", poll_interval=60) as events:
            assert events.wait(0.1) is False
            redis.Redis(port=redis_server.port).publish(other_channel, "{}")
            assert events.wait(0.3) is False, "another namespace's event reached this one"
            redis.Redis(port=redis_server.port).publish(redis_channels.job_channel("abc"), "{}")
            assert events.wait(5) is True


@needs_redis_server
def test_every_reader_of_a_process_shares_one_redis_connection(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ~100 streams a connection per stream ran the pool dry; one subscription client serves them all."""
    # Each reader waits for the hub's next tick to subscribe: 300 of them one after another took 300 ticks.
    monkeypatch.setattr(subscribe, "TICK", 0.002)
    client = redis.Redis(port=redis_server.port)

    def pubsub_clients() -> int:
        return sum(1 for entry in client.client_list() if "P" in entry["flags"])

    with redis_settings(redis_server), contextlib.ExitStack() as stack:
        readers = [stack.enter_context(JobEvents.for_job(n, poll_interval=60)) for n in range(300)]
        assert all(reader.listening for reader in readers)
        assert pubsub_clients() == 1
        assert redis_server.subscribers(redis_channels.job_channel(299)) == 1
        client.publish(redis_channels.job_channel(7), "{}")
        assert readers[7].wait(5) is True
        assert [reader.wait(0) for reader in readers].count(True) == 0, "only job 7's reader woke"
        second = stack.enter_context(JobEvents.for_job(7, poll_interval=60))
        assert second.listening, "a channel already subscribed is heard at once"
        client.publish(redis_channels.job_channel(7), "{}")
        assert second.wait(5) is True and readers[7].wait(5) is True
    wait_until(lambda: redis_server.subscribers(redis_channels.job_channel(7)) == 0, message="unsubscribed")
    wait_until(lambda: pubsub_clients() == 0, timeout=subscribe.IDLE_SECONDS + 5, message="closed when idle")


def test_without_redis_one_poller_reads_every_watched_job_and_wakes_only_the_changed_ones() -> None:
    jobs = [make_job() for _ in range(200)]
    with contextlib.ExitStack() as stack:
        readers = [stack.enter_context(JobEvents.for_job(job.pk, poll_interval=0.1)) for job in jobs]
        assert not any(reader.listening for reader in readers)
        # The first read of each job wakes its reader once (it may have changed since the reader's read).
        assert all(reader.wait(5) for reader in readers)
        assert [reader.wait(0.3) for reader in readers[:5]] == [False] * 5, "nothing changed: no wake-up"
        Job.objects.filter(pk=jobs[42].pk).update(progress={"current": 1})
        assert readers[42].wait(5) is True
        assert [reader.wait(0) for reader in readers].count(True) == 0, "only job 42's reader woke"
        Job.objects.filter(pk=jobs[7].pk).delete()
        assert readers[7].wait(5) is True, "a job that is gone wakes its reader (whose stream then ends)"


def test_a_reader_that_comes_while_the_poller_waits_longer_is_read_on_its_own_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once nobody watches, the poller's thread waits MAX_RETRY; a new stream must not wait that out."""
    monkeypatch.setattr(subscribe, "MAX_RETRY", 60.0)
    monkeypatch.setattr(subscribe, "pollers", subscribe._PerProcess(lambda _: subscribe.JobPoller()))
    first, second = make_job(), make_job()
    with JobEvents.for_job(first.pk, poll_interval=60) as slow:
        assert slow.wait(5) is True, "the thread's first read"
    # The thread has read once and now waits 60 s, with nobody watching.
    with JobEvents.for_job(second.pk, poll_interval=0.05) as events:
        assert events.wait(5) is True, "read at once, not after the thread's 60 s"
        Job.objects.filter(pk=second.pk).update(progress={"current": 1})
        assert events.wait(5) is True
