"""How idle workers hear about new jobs.

PostgreSQL: enqueue runs ``pg_notify`` in the enqueuing transaction, so the
notification is delivered only on commit; each worker process LISTENs on a
dedicated connection. Other databases: polling every ``POLL_INTERVAL``.
Polling stays on as the safety net under LISTEN (deferred jobs becoming due,
a dropped listener connection).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.db import connections
from django.db.models import Model, sql

logger = logging.getLogger("django_bourbon_jobs.wakeup")

CHANNEL = "bourbon_jobs"


def uses_notify(using: str) -> bool:
    return connections[using].vendor == "postgresql"


def notify_queue(using: str, queue_name: str) -> None:
    """NOTIFY the queue's workers (held until commit inside a transaction)."""
    if uses_notify(using):
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, queue_name])


def insert_and_notify(job: Model, using: str) -> None:
    """INSERT the job and NOTIFY its queue in one statement (one round trip).

    Inside the caller's transaction PostgreSQL holds the notification until
    commit, so no worker wakes for a job it cannot see yet; in autocommit the
    row is committed by the time the notification is delivered.
    """
    query = sql.InsertQuery(type(job))
    query.insert_values([f for f in job._meta.concrete_fields], [job])
    [(insert_sql, params)] = query.get_compiler(using=using).as_sql()
    statement = f"WITH j AS ({insert_sql} RETURNING queue_name) SELECT pg_notify(%s, queue_name) FROM j"
    with connections[using].cursor() as cursor:
        cursor.execute(statement, [*params, CHANNEL])


class Wakeup:
    """An event the worker sleeps on; something else sets it when there may be work."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def start(self) -> None:
        """Begin listening; nothing to do for plain polling."""

    def stop(self) -> None:
        self.event.set()

    def wait(self, timeout: float) -> bool:
        woken = self.event.wait(timeout)
        self.event.clear()
        return woken

    def poke(self) -> None:
        self.event.set()


class PostgresListener(Wakeup):
    """LISTEN on a dedicated psycopg connection in a daemon thread; reconnects when it drops."""

    def __init__(self, using: str, queues: frozenset[str]) -> None:
        super().__init__()
        self.using = using
        self.queues = queues
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._listen_forever, name="bourbon-listen", daemon=True)
        self.listening = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        super().stop()

    def _connect(self) -> Any:
        import psycopg

        params = connections[self.using].get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params.pop("server_side_binding", None)
        conn = psycopg.connect(**params, autocommit=True)
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def _listen_forever(self) -> None:
        import psycopg

        delay = 0.1
        while not self._stopping.is_set():
            try:
                conn = self._connect()
            except (psycopg.Error, OSError) as exc:
                logger.warning("LISTEN connection failed (%s); polling until it is back", exc)
                self._stopping.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            self.listening.set()
            try:
                self._relay(conn)
            except (psycopg.Error, OSError) as exc:
                logger.warning("LISTEN connection lost (%s); reconnecting", exc)
            finally:
                self.listening.clear()
                self.poke()
                conn.close()

    def _relay(self, conn: Any) -> None:
        while not self._stopping.is_set():
            for notify in conn.notifies(timeout=1.0):
                if not self.queues or notify.payload in self.queues:
                    self.poke()


def wakeup_for(using: str, queues: frozenset[str]) -> Wakeup:
    """LISTEN/NOTIFY on PostgreSQL through psycopg 3; polling everywhere else (psycopg2 too)."""
    connection = connections[using]
    if connection.vendor == "postgresql" and getattr(connection, "Database", object).__name__ == "psycopg":
        return PostgresListener(using, queues)
    return Wakeup()
