"""The dashboard's live stream: staff only, and a ``changed`` event when jobs move, with or without Redis."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_bourbon_jobs import dispatch_async
from django_bourbon_jobs.admin.jobs import JobAdmin
from django_bourbon_jobs.admin.live import DashboardStream
from django_bourbon_jobs.events.sse import RETRY, as_sse
from django_bourbon_jobs.models import Job
from tests import tasks
from tests.conftest import RedisServer, drain, needs_redis_server, redis_settings
from tests.test_admin import DASHBOARD, staff
from tests.test_sse import EventReader, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = reverse("admin:bourbon_jobs_job_dashboard_events")


@pytest.fixture
def operator_cookie(admin_user: Any) -> str:
    return session_cookie(admin_user)


def page_fingerprint(client: Any) -> str:
    response = client.get(DASHBOARD)
    assert f'data-events-url="{EVENTS}"' in response.content.decode()
    return str(response.context["fingerprint"])


def test_only_staff_with_view_permission_may_listen(client: Any, django_user_model: Any) -> None:
    assert client.get(EVENTS).status_code == 302  # to the admin login
    client.force_login(django_user_model.objects.create_user("visitor"))
    assert client.get(EVENTS).status_code == 302
    support = staff(django_user_model)
    client.force_login(support)
    assert client.get(EVENTS).status_code == 403
    support.user_permissions.add(Permission.objects.get(codename="view_job"))
    response = client.get(EVENTS)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream; charset=utf-8"
    response.close()


def test_without_redis_a_finished_job_is_pushed_and_nothing_else(
    live_server: Any, admin_client: Any, operator_cookie: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(JobAdmin, "dashboard_poll_interval", 0.1)
    monkeypatch.setattr(JobAdmin, "dashboard_heartbeat_interval", 0.3)
    dispatch_async(tasks.echo, 1)
    since = page_fingerprint(admin_client)
    reader = EventReader(live_server.url, f"{EVENTS}?since={since}", operator_cookie)
    blocks = reader.blocks()
    assert next(blocks) == {"retry": "2000"}
    # Polled a few times by now, and the page is current: no event, only a heartbeat.
    assert next(blocks) == {"comments": ["heartbeat"]}
    drain()
    events = (block for block in blocks if "event" in block)
    event = next(event for event in events if '"succeeded": 1' in event["data"])  # or a socket timeout
    reader.close()
    assert event["event"] == "changed" and '"queued": 0' in event["data"]
    assert event["id"] == page_fingerprint(admin_client)


def test_a_stale_page_or_reconnect_is_told_at_once(
    live_server: Any, admin_client: Any, operator_cookie: str
) -> None:
    current = page_fingerprint(admin_client)
    reader = EventReader(live_server.url, f"{EVENTS}?since=stale", operator_cookie)
    event = reader.next_event()
    reader.close()
    assert event is not None and (event["event"], event["id"]) == ("changed", current)
    assert event["data"]["status_counts"]["queued"] == 0
    # A browser reconnecting sends Last-Event-ID, which wins over the page's ?since=.
    reader = EventReader(live_server.url, f"{EVENTS}?since={current}", operator_cookie, last_event_id="old")
    event = reader.next_event()
    reader.close()
    assert event is not None and event["id"] == current


@needs_redis_server
def test_with_redis_job_events_push_at_most_once_per_min_gap(
    live_server: Any, operator_cookie: str, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No poll and no heartbeat for a minute: only Redis messages can wake the stream in time.
    monkeypatch.setattr(JobAdmin, "dashboard_poll_interval", 60.0)
    monkeypatch.setattr(JobAdmin, "dashboard_heartbeat_interval", 60.0)
    monkeypatch.setattr(JobAdmin, "dashboard_min_gap", 1.0)
    with redis_settings(redis_server):
        reader = EventReader(live_server.url, f"{EVENTS}?since=stale", operator_cookie, timeout=10)
        first = reader.next_event()
        arrivals = [time.monotonic()]
        assert first is not None and first["data"]["status_counts"]["queued"] == 0
        assert redis_server.pattern_subscriptions() == 1

        dispatch_async(tasks.echo, 1)  # announced on bourbon_jobs:enqueued
        queued = reader.next_event()
        arrivals.append(time.monotonic())
        assert queued is not None and queued["data"]["status_counts"]["queued"] == 1

        drain()  # claimed, then succeeded: announced on the job's channel
        while (event := reader.next_event()) is not None:
            arrivals.append(time.monotonic())
            if event["data"]["status_counts"]["succeeded"] == 1:
                break
        reader.close()
    assert event is not None and event["data"]["status_counts"]["queued"] == 0
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert min(gaps) >= 0.9, gaps  # min_gap apart, however many messages came meanwhile


def test_each_read_is_two_queries_and_holds_no_connection() -> None:
    stream = as_sse(DashboardStream(since=None, poll_interval=0.01, min_gap=0))
    assert next(stream) == RETRY
    with CaptureQueriesContext(connection) as queries:
        first = next(stream)
    assert first.startswith("event: changed\nid: ")
    assert len(queries.captured_queries) == 2
    assert connection.connection is None
    now = timezone.now()
    Job.objects.create(task_path="tests.tasks.echo", run_after=now, enqueued_at=now)
    assert '"queued": 1' in next(stream)
    assert connection.connection is None
