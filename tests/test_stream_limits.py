"""Caps on open event streams (per user and per process) and the rate of opening them."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.test import override_settings
from django.urls import reverse

from django_bourbon_jobs.api.views import JobViewSet
from django_bourbon_jobs.events import sse
from tests.conftest import wait_until
from tests.factories import API, dispatched_id, make_user
from tests.streams import EventReader
from tests.test_sse import session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def quick_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under WSGI a stream learns that its client left when a write fails: at a heartbeat."""
    monkeypatch.setattr(JobViewSet, "stream_heartbeat_interval", 0.1)


def limits(**values: Any) -> Any:
    return override_settings(BOURBON_JOBS={**settings.BOURBON_JOBS, **values})


@pytest.fixture
def carol(db: None) -> User:
    return make_user("carol")


def stream(live_server: Any, user: User, job_id: str) -> EventReader:
    return EventReader(live_server.url, f"{API}{job_id}/events/", session_cookie(user))


def refused(reader: EventReader) -> dict[str, Any]:
    assert reader.response.status == 429
    assert int(reader.response.getheader("Retry-After")) > 0
    event = reader.next_event()
    reader.close()
    assert event is not None and event["event"] == "error"
    return event["data"]  # type: ignore[no-any-return]


def test_one_users_open_streams_are_capped_and_a_closed_one_gives_its_slot_back(
    live_server: Any, bob: User, carol: User
) -> None:
    job = dispatched_id(bob, task="echo", payload="x")
    with limits(STREAMS_PER_USER=2):
        first, second = stream(live_server, bob, job), stream(live_server, bob, job)
        assert [first.next_event()["event"], second.next_event()["event"]] == ["status", "status"]  # type: ignore[index]
        assert "You have 2 event streams open already" in refused(stream(live_server, bob, job))["detail"]
        other = stream(live_server, carol, dispatched_id(carol, task="echo", payload="y"))
        assert other.response.status == 200, "the cap is per user"
        other.close()
        first.close()
        wait_until(lambda: sse.slots.open == 1, message="the closed stream's slot given back")
        again = stream(live_server, bob, job)
        assert again.response.status == 200
        again.close()
        second.close()
    wait_until(lambda: sse.slots.open == 0, message="every slot given back")


def test_a_process_holds_at_most_its_cap_of_streams(live_server: Any, bob: User, carol: User) -> None:
    with limits(STREAMS_PER_PROCESS=2):
        held = [
            stream(live_server, bob, dispatched_id(bob, task="echo", payload=1)),
            stream(live_server, carol, dispatched_id(carol, task="echo", payload=2)),
        ]
        assert (
            "as many event streams open as it allows"
            in refused(stream(live_server, bob, dispatched_id(bob, task="echo", payload=3)))["detail"]
        )
        for reader in held:
            reader.close()
    wait_until(lambda: sse.slots.open == 0, message="every slot given back")


def test_opening_streams_is_throttled(live_server: Any, bob: User) -> None:
    job = dispatched_id(bob, task="echo", payload="x")
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "bourbon_jobs.stream": "2/minute"}
    with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}):
        for _ in range(2):
            reader = stream(live_server, bob, job)
            assert reader.response.status == 200
            reader.close()
        assert "throttled" in refused(stream(live_server, bob, job))["detail"].lower()


def test_the_admin_dashboard_stream_counts_too(client: Any, django_user_model: Any) -> None:
    support = django_user_model.objects.create_user("support", is_staff=True)
    support.user_permissions.add(Permission.objects.get(codename="view_job"))
    client.force_login(support)
    url = reverse("admin:bourbon_jobs_job_dashboard_events")
    with limits(STREAMS_PER_USER=1):
        held = client.get(url)
        assert held.status_code == 200
        response = client.get(url)
        assert response.status_code == 429
        assert response["Retry-After"] == str(sse.FULL_RETRY_AFTER)
        held.close()
        assert client.get(url).status_code == 200
