"""300 open event streams against a PostgreSQL that allows 100 connections, under uvicorn.

The audit's flood: each open stream held a connection, so ordinary requests failed
with ``too many clients already``. Here a private cluster (``max_connections=100``,
on a spare port) serves the test project under uvicorn, with Redis for events or without; 30
users hold 10 streams each (``STREAMS_PER_USER``), and meanwhile the ordinary API
keeps answering 2xx as fast as before the flood, with few connections open. Without
Redis, one poller per process reads every watched job in one query.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.chaoslib.services import Postgres
from tests.conftest import ROOT, RedisServer, needs_redis_server, once_per_run, subprocess_env
from tests.streams import EventReader, Uvicorn

USERS = 30
STREAMS_EACH = 10
pytestmark = [
    needs_redis_server,
    once_per_run,
    pytest.mark.skipif(
        os.environ.get("BOURBON_TEST_DB") != "postgres", reason="run with the PostgreSQL suite"
    ),
    pytest.mark.skipif(shutil.which("runuser") is None and os.geteuid() == 0, reason="needs runuser"),
]


@pytest.fixture
def small_postgres() -> Iterator[Postgres]:
    workdir = Path(tempfile.mkdtemp(prefix="bourbon-flood-"))
    workdir.chmod(0o755)  # the postgres user must reach its data directory
    cluster = Postgres(workdir, max_connections=100)
    try:
        cluster.init()
        cluster.start()
        cluster.create_database("flood")
        yield cluster
    finally:
        cluster.close()
        shutil.rmtree(workdir, ignore_errors=True)


def project_env(cluster: Postgres, redis_server: RedisServer | None) -> dict[str, str]:
    redis = {"BOURBON_TEST_REDIS_URL": redis_server.url} if redis_server else {}
    return {
        "DJANGO_SETTINGS_MODULE": "tests.settings_redis" if redis_server else "tests.settings",
        **redis,
        "BOURBON_TEST_DB": "postgres",
        "BOURBON_TEST_DB_NAME": "flood",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(cluster.port),
    }


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args],
        env=subprocess_env(**env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def client_backends(cluster: Postgres) -> int:
    with psycopg.connect(host="127.0.0.1", port=cluster.port, user="postgres", dbname="postgres") as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = 'flood' AND backend_type = 'client backend'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def list_latencies(server: Uvicorn, cookie: str, count: int) -> list[tuple[int, float]]:
    """``GET /api/jobs/`` ``count`` times in a row: (status, seconds) each."""
    import http.client

    results = []
    for _ in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        started = time.perf_counter()
        conn.request("GET", "/api/jobs/", headers={"Cookie": cookie, "Accept": "application/json"})
        response = conn.getresponse()
        response.read()
        results.append((response.status, time.perf_counter() - started))
        conn.close()
    return results


def open_stream(server: Uvicorn, person: dict[str, Any]) -> EventReader:
    reader = EventReader(server.url, f"/api/jobs/{person['job_id']}/events/", person["cookie"], timeout=60)
    assert reader.response.status == 200, reader.response.status
    event = reader.next_event()
    assert event is not None and event["data"]["status"] == "queued"
    return reader


@pytest.mark.parametrize("with_redis", [True, False], ids=["redis", "polling"])
def test_300_streams_leave_the_database_and_the_api_alone(
    small_postgres: Postgres, redis_server: RedisServer, with_redis: bool
) -> None:
    env = project_env(small_postgres, redis_server if with_redis else None)
    manage(env, "-m", "django", "migrate", "-v", "0")
    people = json.loads(manage(env, "-m", "tests.security.flood_setup", str(USERS)))
    server = Uvicorn(**env)
    readers: list[EventReader] = []
    try:
        before = list_latencies(server, people[0]["cookie"], 30)
        with ThreadPoolExecutor(max_workers=50) as pool:
            readers = list(
                pool.map(lambda n: open_stream(server, people[n % USERS]), range(USERS * STREAMS_EACH))
            )
        held = client_backends(small_postgres)
        during = list_latencies(server, people[0]["cookie"], 30)
        refused = EventReader(server.url, f"/api/jobs/{people[1]['job_id']}/events/", people[1]["cookie"])
        assert refused.response.status == 429, "an 11th stream of one user"
        assert int(refused.response.getheader("Retry-After")) > 0
        refused.close()
        still_open = sum(1 for reader in readers if not reader.response.isclosed())
    finally:
        for reader in readers:
            reader.close()
        server.stop()
    assert still_open == USERS * STREAMS_EACH
    assert held <= 10, f"{held} connections held by 300 waiting streams"
    assert [code for code, _ in during] == [200] * len(during)
    usual, flooded = statistics.median(s for _, s in before), statistics.median(s for _, s in during)
    print(
        f"list p50 before {usual * 1000:.1f} ms, with 300 streams open {flooded * 1000:.1f} ms; {held} held"
    )
    assert flooded < max(3 * usual, usual + 0.05), (usual, flooded)
