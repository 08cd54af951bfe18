"""Redis (django-redis) as the fast path: instant wake-ups, never the only copy of a job.

Each test runs its own ``redis-server`` on a free port (the ``redis_server`` fixture),
so it can stop and restart it without touching the machine's Redis.
"""

import json
import logging
import socket
import threading
import time

import pytest
import redis
from django.db import transaction
from django.test import override_settings

from django_bourbon_jobs import dispatch_async
from django_bourbon_jobs.events import redis_channels
from django_bourbon_jobs.models import Job, JobStatus, Worker
from django_bourbon_jobs.worker import wakeup
from tests import tasks
from tests.conftest import drain, needs_redis_server, redis_settings, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), needs_redis_server]


def subscriber(server):
    pubsub = redis.Redis(port=server.port).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(redis_channels.enqueued_channel())
    wait_until(lambda: pubsub.get_message(timeout=0.1) is None and pubsub.subscribed, message="subscribed")
    return pubsub


def messages(pubsub, within=0.5):
    seen, deadline = [], time.monotonic() + within
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.05)
        if message:
            seen.append(message["data"].decode())
    return seen


def skip_where_workers_listen():
    if wakeup.workers_listen("default"):
        pytest.skip("on PostgreSQL LISTEN/NOTIFY wakes workers; Redis wake-ups are for other databases")


def test_enqueue_publishes_only_after_commit(redis_server):
    with redis_settings(redis_server):
        pubsub = subscriber(redis_server)
        tasks.echo.enqueue(1)
        assert messages(pubsub) == ["default"]
        with transaction.atomic():
            tasks.send_welcome_email.enqueue({"email": "a@example.com"})
            assert messages(pubsub, within=0.2) == []
        assert messages(pubsub) == ["emails"]
        with pytest.raises(RuntimeError), transaction.atomic():
            tasks.echo.enqueue(2)
            raise RuntimeError("rolled back")
        assert messages(pubsub) == []


def test_dispatch_carries_on_while_redis_is_down_and_logs_once(redis_server, caplog):
    caplog.set_level(logging.WARNING, logger="django_bourbon_jobs.events")
    with redis_settings(redis_server):
        redis_server.stop()
        ids = [dispatch_async(tasks.echo, n).id for n in range(3)]
        assert Job.objects.filter(pk__in=ids, status=JobStatus.QUEUED).count() == 3
        wait_until(lambda: logged(caplog, "unreachable"), message="the outage logged")
        redis_server.start()
        pubsub = subscriber(redis_server)
        dispatch_async(tasks.echo, "back")
        assert messages(pubsub) == ["default"]
        # The publisher thread sends in order: the three failed attempts were all made before.
        assert len(logged(caplog, "unreachable")) == 1
        assert logged(caplog, "reachable again")


def logged(caplog, text):
    return [r for r in caplog.records if text in r.getMessage()]


def test_a_redis_that_stops_answering_does_not_hold_up_dispatch(redis_server, caplog):
    """A server that accepts connections and never replies: the enqueue must not wait on it."""
    caplog.set_level(logging.WARNING, logger="django_bourbon_jobs.events")
    silent = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True).start()
    from tests import settings_redis

    location = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
    caches = {**settings_redis.CACHES, "jobs": {**settings_redis.CACHES["jobs"], "LOCATION": location}}
    try:
        with override_settings(CACHES=caches, TASKS=settings_redis.TASKS):  # SOCKET_TIMEOUT is 2 s
            began = time.monotonic()
            result = dispatch_async(tasks.echo, "not held up")
            took = time.monotonic() - began
            wait_until(lambda: accepted, message="the publisher connected to the silent server")
            assert took < 1.0, f"enqueue waited {took:.2f}s on a Redis that never answers"
            assert Job.objects.get(pk=result.id).status == JobStatus.QUEUED
            wait_until(lambda: logged(caplog, "unreachable"), message="the publish timing out")
        with redis_settings(redis_server):
            dispatch_async(tasks.echo, "and back")
            wait_until(lambda: logged(caplog, "reachable again"), message="the publisher recovered")
    finally:
        for conn in accepted:
            conn.close()
        silent.close()


def subscribed_workers(server) -> int:
    return server.subscribers(redis_channels.enqueued_channel())


def test_workers_wake_on_redis_and_survive_its_restart(redis_server, runworkers):
    skip_where_workers_listen()
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.settings_redis",
        "BOURBON_TEST_REDIS_URL": redis_server.url,
        "BOURBON_TEST_SETTINGS": json.dumps({"POLL_INTERVAL": 30, "RESCUE_INTERVAL": 30}),
    }
    proc = runworkers("--processes", "1", **env)
    with redis_settings(redis_server):
        wait_until(lambda: subscribed_workers(redis_server) == 1, message="worker subscribed")
        first = tasks.echo.enqueue("woken by redis")
        wait_until(lambda: Job.objects.get(pk=first.id).status == JobStatus.SUCCEEDED, timeout=5)

        redis_server.stop()
        during = dispatch_async(tasks.echo, "while redis is down")
        assert Job.objects.filter(pk=during.id).exists(), "stored even though Redis is down"

        redis_server.start()
        wait_until(lambda: subscribed_workers(redis_server) == 1, timeout=15, message="worker re-subscribed")
        after = dispatch_async(tasks.echo, "after the restart")
        done = Job.objects.filter(pk__in=[during.id, after.id], status=JobStatus.SUCCEEDED)
        wait_until(lambda: done.count() == 2, timeout=5, message="wake-up through the restarted Redis")
    proc.signal(15)
    assert proc.wait(30) == 0, proc.output()
    assert Job.objects.get(pk=during.id).attempts == 1


def test_on_postgresql_workers_wake_by_notify_alone(redis_server, runworkers):
    if not wakeup.workers_listen("default"):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's (through psycopg 3)")
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.settings_redis",
        "BOURBON_TEST_REDIS_URL": redis_server.url,
        "BOURBON_TEST_SETTINGS": json.dumps({"POLL_INTERVAL": 30, "RESCUE_INTERVAL": 30}),
    }
    with redis_settings(redis_server):
        sources = wakeup.wakeup_for("default", frozenset()).sources
        assert [type(source) for source in sources] == [wakeup.PostgresListener]
        proc = runworkers("--processes", "1", **env)
        wait_until(lambda: Worker.objects.exists(), timeout=15, message="worker registered")
        first = tasks.echo.enqueue("woken by NOTIFY")
        wait_until(lambda: Job.objects.get(pk=first.id).status == JobStatus.SUCCEEDED, timeout=5)
        assert subscribed_workers(redis_server) == 0
    proc.signal(15)
    assert proc.wait(30) == 0, proc.output()


def test_workers_fall_back_to_polling_when_redis_is_gone(redis_server, runworkers):
    redis_server.stop()
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.settings_redis",
        "BOURBON_TEST_REDIS_URL": redis_server.url,
        "BOURBON_TEST_SETTINGS": json.dumps({"POLL_INTERVAL": 0.2}),
    }
    with redis_settings(redis_server):
        ids = [dispatch_async(tasks.echo, n).id for n in range(5)]
    proc = runworkers("--processes", "1", **env)
    wait_until(lambda: Job.objects.filter(pk__in=ids, status=JobStatus.SUCCEEDED).count() == 5, timeout=15)
    proc.signal(15)
    assert proc.wait(30) == 0, proc.output()


def test_job_events_are_published_per_job(redis_server):
    with redis_settings(redis_server):
        result = tasks.reports_progress.enqueue(None)
        pubsub = redis.Redis(port=redis_server.port).pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(redis_channels.job_channel(result.id))
        wait_until(
            lambda: pubsub.get_message(timeout=0.1) is None and pubsub.subscribed, message="subscribed"
        )
        drain()
        events = [json.loads(m) for m in messages(pubsub)]
    statuses = [event["status"] for event in events]
    assert statuses[0] == "running" and statuses[-1] == "succeeded", statuses
    assert any(event["progress"] and event["progress"]["current"] == 1 for event in events)
    assert events[-1]["progress"]["current"] == 3
    assert {event["job_id"] for event in events} == {result.id}


def test_a_new_redis_subscription_pokes_the_worker(redis_server):
    from django_bourbon_jobs.worker.wakeup import RedisListener, Wakeup

    wakeup = Wakeup([lambda w: RedisListener(w, frozenset(), "jobs")])
    with redis_settings(redis_server):
        wakeup.start()
        try:
            wait_until(wakeup.sources[0].listening.is_set, timeout=10, message="subscribed")
            assert wakeup.wait(5) is True
        finally:
            wakeup.stop()
