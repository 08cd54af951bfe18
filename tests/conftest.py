"""Shared fixtures: a worker driven in-process, condition waits with deadlines, runworkers subprocesses,
and a ``redis-server`` of the test's own."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connection
from django.test import override_settings

from django_bourbon_jobs.worker.process import WorkerConfig, WorkerProcess

ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate: Callable[[], object], timeout: float = 20.0, message: str = "condition") -> object:
    """Poll ``predicate`` until it is truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def drain(**options: object) -> WorkerProcess:
    """Run a worker in this process until nothing is due, with any ``WorkerConfig`` option; return it.

    For the worker's own tests, which set its options and look at it afterwards; other tests
    use the users' helper, ``django_bourbon_jobs.testing.drain``.
    """
    worker = WorkerProcess(WorkerConfig(burst=True, **options))  # type: ignore[arg-type]
    worker.run()
    return worker


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": str(ROOT),
            "BOURBON_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
            **extra,
        }
    )
    return env


class RunWorkers:
    """``manage.py runworkers`` in a subprocess, stopped (and reaped) at the end of the test."""

    def __init__(self, *args: str, **env: str) -> None:
        self.log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "django", "runworkers", *args],
            cwd=ROOT,
            env=subprocess_env(**env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"runworkers did not exit within {timeout}s:\n{self.output()}") from None

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        """Kill the whole process group: the supervisor and any child it left behind."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)


@pytest.fixture
def runworkers(transactional_db: None) -> Iterator[Callable[..., RunWorkers]]:
    started: list[RunWorkers] = []

    def start(*args: str, **env: str) -> RunWorkers:
        connection.close()
        proc = RunWorkers(*args, **env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def child_pids(parent: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True, check=False).stdout
    return [int(pid) for pid in out.split()]


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


ONCE_PER_RUN = (
    "runs once per tox run, in py313's PostgreSQL pass (tox.ini's BOURBON_TEST_ONCE_PER_RUN): "
    "it depends on neither the test database nor the Python version"
)
once_per_run = pytest.mark.skipif(os.environ.get("BOURBON_TEST_ONCE_PER_RUN") == "0", reason=ONCE_PER_RUN)
"""For a test of the shipped package, or of a project on a SQLite file or PostgreSQL cluster of its own;
run everywhere outside tox."""

needs_redis_server = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


class RedisServer:
    """A ``redis-server`` on a free port, so a test can stop and restart it without touching the machine's."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        wait_until(lambda: _pings(client), timeout=10, message="redis-server up")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def subscribers(self, channel: str) -> int:
        """How many clients subscribe to ``channel``; 0 while the server is down."""
        try:
            [(_, count)] = redis.Redis(port=self.port).pubsub_numsub(channel)
        except redis.ConnectionError:
            return 0
        return int(count)

    def pattern_subscriptions(self) -> int:
        try:
            return int(redis.Redis(port=self.port).pubsub_numpat())
        except redis.ConnectionError:
            return 0


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


def redis_settings(server: RedisServer) -> Any:
    """``tests.settings_redis`` pointed at ``server``: the backend's ``OPTIONS["REDIS"]`` is ``"jobs"``."""
    from tests import settings_redis

    caches = {**settings_redis.CACHES, "jobs": {**settings_redis.CACHES["jobs"], "LOCATION": server.url}}
    return override_settings(CACHES=caches, TASKS=settings_redis.TASKS)


def close_response(response: Any) -> None:
    """Close a test client's response (a stream gives its slot back) without closing the test's connection.

    Closing sends ``request_finished``, whose ``close_old_connections`` would close the
    connection of a test that runs in a transaction; Django's test client disconnects it
    around its own close, and so does this.
    """
    from django.core.signals import request_finished
    from django.db import close_old_connections

    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


SMALL_TABLE_BYTES = 1 << 20


@pytest.fixture(scope="session", autouse=True)
def empty_small_postgres_tables_with_delete() -> Iterator[None]:
    """Between transactional tests, PostgreSQL's tables are emptied by DELETE rather than TRUNCATE.

    Django flushes with one ``TRUNCATE`` of every table, which makes new files for each table
    and index: 120 ms a test here, against 5 ms for DELETEs of the few rows a test leaves (and
    about 400 tests flush). Every foreign key is deferred to the flush's commit, so the order does
    not matter. Once any table has grown past 1 MB (a bulk test, or dead rows piling up between
    vacuums), the flush is Django's own TRUNCATE, which also leaves the table small again.
    """
    if connection.vendor != "postgresql":
        yield
        return
    operations = type(connection.ops)
    truncate = operations.sql_flush

    def sql_flush(
        ops: Any, style: Any, tables: Any, *, reset_sequences=False, allow_cascade=False
    ) -> list[str]:
        if tables and not reset_sequences and not allow_cascade:
            with ops.connection.cursor() as cursor:
                cursor.execute(
                    "SELECT NOT EXISTS (SELECT FROM pg_class WHERE relname = ANY(%s)"
                    " AND relkind = 'r' AND pg_total_relation_size(oid) > %s)",
                    [list(tables), SMALL_TABLE_BYTES],
                )
                if cursor.fetchone()[0]:
                    deletes = [f"DELETE FROM {ops.quote_name(table)};" for table in tables]
                    return ["SET CONSTRAINTS ALL DEFERRED;", *deletes]
        return truncate(ops, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(operations, "sql_flush", sql_flush)
        yield


@pytest.fixture(autouse=True)
def fresh_stream_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Open streams are counted per process; a test's unclosed stream must not count against the next."""
    from django_bourbon_jobs.events import sse

    monkeypatch.setattr(sse, "slots", sse.StreamSlots())


@pytest.fixture
def alice(db: None) -> Any:
    """A user with no job permission (in a transactional test, its database is transactional)."""
    from tests.factories import make_user

    return make_user("alice")


@pytest.fixture
def bob(db: None) -> Any:
    from tests.factories import make_user

    return make_user("bob")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """A browser test skipped for want of chromium is said out loud at the end, not only in ``-ra``'s list."""
    from tests.browser import MISSING

    skipped = [
        report for report in terminalreporter.stats.get("skipped", []) if MISSING in str(report.longrepr)
    ]
    if skipped:
        terminalreporter.section("browser tests NOT run", sep="!", yellow=True, bold=True)
        terminalreporter.line(f"{len(skipped)} skipped: {MISSING}", yellow=True, bold=True)
    elsewhere = [
        report for report in terminalreporter.stats.get("skipped", []) if ONCE_PER_RUN in str(report.longrepr)
    ]
    if elsewhere:
        terminalreporter.line(f"{len(elsewhere)} skipped here: {ONCE_PER_RUN}", yellow=True)
