"""Live job updates over WebSocket (Channels) under uvicorn, read with a real WebSocket client."""

from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import time
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.conftest import RedisServer, redis_settings, wait_until
from tests.factories import dispatched_id
from tests.streams import Uvicorn
from tests.test_sse import session_cookie, start_worker

pytestmark = pytest.mark.django_db(transaction=True)


def socket(server: Uvicorn, path: str, user: User | None, origin: str | None = None) -> ClientConnection:
    headers = {"Cookie": session_cookie(user)} if user is not None else {}
    url = server.url.replace("http://", "ws://") + path
    return connect(url, additional_headers=headers, origin=origin or server.url, open_timeout=10)  # type: ignore[arg-type]


def messages(ws: ClientConnection, timeout: float = 15) -> list[dict[str, Any]]:
    """Every message until the server closes the socket."""
    received = []
    try:
        while True:
            received.append(json.loads(ws.recv(timeout=timeout)))
    except ConnectionClosed:
        return received


def next_job_event(ws: ClientConnection, timeout: float = 15) -> dict[str, Any]:
    while True:
        message = json.loads(ws.recv(timeout=timeout))
        if message["event"] != "heartbeat":
            return message  # type: ignore[no-any-return]


@pytest.fixture(params=["polling", "redis"])
def server(request: pytest.FixtureRequest, alice: User) -> Any:
    if request.param == "redis":
        if shutil.which("redis-server") is None:
            pytest.skip("needs redis-server")
        redis_server = RedisServer()
        redis_server.start()
        uvicorn = Uvicorn(
            DJANGO_SETTINGS_MODULE="tests.settings_redis", BOURBON_TEST_REDIS_URL=redis_server.url
        )
        with redis_settings(redis_server):  # so this process's dispatches and worker publish too
            yield uvicorn
        uvicorn.stop()
        redis_server.stop()
        return
    uvicorn = Uvicorn()
    yield uvicorn
    uvicorn.stop()


def test_one_jobs_events_until_it_finishes(server: Uvicorn, alice: User) -> None:
    job_id = dispatched_id(alice, task="echo", payload="over a websocket")
    with socket(server, f"/ws/jobs/{job_id}/", alice) as ws:
        first = next_job_event(ws)
        assert (first["event"], first["data"]["status"], first["data"]["job_id"]) == (
            "status",
            "queued",
            job_id,
        )
        worker = start_worker()
        rest = [message for message in messages(ws) if message["event"] != "heartbeat"]
        worker.join(10)
    assert rest[-1]["data"]["status"] == "succeeded"
    assert rest[-1]["data"]["result"] == "over a websocket"
    assert rest[-1]["data"]["status_url"].startswith("http://127.0.0.1:")


def test_all_of_the_callers_jobs_and_nobody_elses(server: Uvicorn, alice: User, bob: User) -> None:
    before = dispatched_id(alice, task="echo", payload="already queued")
    with socket(server, "/ws/jobs/", alice) as ws:
        assert next_job_event(ws)["data"]["job_id"] == before, "the open jobs come first"
        hers = dispatched_id(alice, task="echo", payload="hers")
        dispatched_id(bob, task="echo", payload="his")
        seen = {before}
        deadline = time.monotonic() + 15
        while hers not in seen and time.monotonic() < deadline:
            seen.add(next_job_event(ws)["data"]["job_id"])
        worker = start_worker()
        statuses: dict[str, str] = {}
        while sorted(statuses.values()) != ["succeeded", "succeeded"] and time.monotonic() < deadline + 15:
            event = next_job_event(ws)
            statuses[event["data"]["job_id"]] = event["data"]["status"]
        worker.join(10)
    assert statuses == {before: "succeeded", hers: "succeeded"}
    assert seen == {before, hers}


def refused(server: Uvicorn, path: str, user: User | None, origin: str | None = None) -> int:
    with pytest.raises(InvalidStatus) as refusal:
        socket(server, path, user, origin).close()
    return refusal.value.response.status_code


def test_not_yours_missing_and_anonymous_are_refused_alike(server: Uvicorn, alice: User, bob: User) -> None:
    job_id = dispatched_id(alice, task="echo", payload="hers")
    not_yours = refused(server, f"/ws/jobs/{job_id}/", bob)
    assert not_yours == refused(server, "/ws/jobs/01a20856-1b7d-79ea-ab93-c261e11612f5/", bob)
    assert not_yours == refused(server, "/ws/jobs/not-an-id/", bob)
    assert refused(server, f"/ws/jobs/{job_id}/", None) == not_yours == 403
    viewer = User.objects.create_user("viewer")
    viewer.user_permissions.add(Permission.objects.get(codename="view_job"))
    with socket(server, f"/ws/jobs/{job_id}/", viewer) as ws:
        assert next_job_event(ws)["data"]["job_id"] == job_id, "view_job sees everyone's jobs"


def test_a_foreign_origin_is_refused(alice: User) -> None:
    server = Uvicorn(BOURBON_TEST_ALLOWED_HOSTS="127.0.0.1")
    try:
        job_id = dispatched_id(alice, task="echo", payload="x")
        assert refused(server, f"/ws/jobs/{job_id}/", alice, origin="http://evil.example") == 403
        with socket(server, f"/ws/jobs/{job_id}/", alice) as ws:
            assert next_job_event(ws)["event"] == "status"
    finally:
        server.stop()


def test_a_client_that_leaves_mid_stream_gives_its_slot_back(alice: User) -> None:
    server = Uvicorn(BOURBON_TEST_SETTINGS=json.dumps({"STREAMS_PER_USER": 1}))
    try:
        job_id = dispatched_id(alice, task="echo", payload="x")
        with socket(server, f"/ws/jobs/{job_id}/", alice) as first:
            assert next_job_event(first)["event"] == "status"
            assert refused(server, f"/ws/jobs/{job_id}/", alice) == 403, "over STREAMS_PER_USER"

        def accepted_again() -> bool:
            try:
                with socket(server, f"/ws/jobs/{job_id}/", alice) as again:
                    return next_job_event(again)["event"] == "status"
            except InvalidStatus:
                return False

        wait_until(accepted_again, timeout=10, message="the slot given back")
    finally:
        server.stop()


def test_200_idle_sockets_do_not_starve_other_requests(alice: User) -> None:
    import http.client

    server = Uvicorn(BOURBON_TEST_SETTINGS=json.dumps({"STREAMS_PER_USER": 500}))
    cookie = session_cookie(alice)

    def list_once() -> tuple[int, float]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        started = time.perf_counter()
        conn.request("GET", "/api/jobs/", headers={"Cookie": cookie})
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.status, time.perf_counter() - started

    sockets: list[ClientConnection] = []
    held = contextlib.ExitStack()
    try:
        job_id = dispatched_id(alice, task="echo", payload="x")
        usual = statistics.median(seconds for _, seconds in (list_once() for _ in range(20)))
        url = server.url.replace("http://", "ws://") + f"/ws/jobs/{job_id}/"
        for _ in range(200):
            sockets.append(
                held.enter_context(connect(url, additional_headers={"Cookie": cookie}, origin=server.url))
            )  # type: ignore[arg-type]
        assert all(next_job_event(ws)["event"] == "status" for ws in sockets)
        during = [list_once() for _ in range(20)]
        assert [code for code, _ in during] == [200] * 20
        flooded = statistics.median(seconds for _, seconds in during)
        assert flooded < max(3 * usual, usual + 0.05), (usual, flooded)
    finally:
        held.close()
        server.stop()
