"""How idle workers hear about new jobs.

PostgreSQL: enqueue runs ``pg_notify`` in the enqueuing transaction, so the
notification is delivered only on commit; each worker process LISTENs on a
dedicated connection. With Redis configured (``TASKS[...]["OPTIONS"]["REDIS"]``),
enqueue also publishes after commit, and where workers cannot LISTEN (SQLite,
MySQL, PostgreSQL through psycopg 2) they subscribe: instant wake-ups on any
database. Polling every ``POLL_INTERVAL`` stays on underneath as the safety net
(deferred jobs becoming due, a channel that is down).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from django.db import connections

from django_bourbon_jobs.events import redis_channels
from django_bourbon_jobs.store import pgbound
from django_bourbon_jobs.store.postgres import CHANNEL

logger = logging.getLogger("django_bourbon_jobs.wakeup")


def workers_listen(using: str) -> bool:
    """True where workers LISTEN on the database itself (PostgreSQL through psycopg 3).

    There a NOTIFY reaches them as the enqueuing transaction commits, before the
    Redis publish sent after the commit; subscribing as well would only make
    every idle process claim twice per job. So workers subscribe to Redis only
    where the database cannot wake them.
    """
    return pgbound.available(connections[using])


class Wakeup:
    """An event the worker sleeps on, set by whatever sources say there may be work.

    Sources (LISTEN/NOTIFY, Redis pub/sub) run in daemon threads and only ever
    ``poke()``; a source that loses its connection pokes too, so the worker polls
    the database at once instead of trusting a silent channel.
    """

    def __init__(self, sources: list[Callable[[Wakeup], Source]] | None = None) -> None:
        self.event = threading.Event()
        self.sources = [make(self) for make in sources or []]

    def start(self) -> None:
        for source in self.sources:
            source.start()

    def stop(self) -> None:
        for source in self.sources:
            source.stop()
        self.event.set()

    def wait(self, timeout: float) -> bool:
        woken = self.event.wait(timeout)
        self.event.clear()
        return woken

    def poke(self) -> None:
        self.event.set()


class Source:
    """A listener in a daemon thread that pokes a :class:`Wakeup`; reconnects by itself."""

    name = "source"

    def __init__(self, wakeup: Wakeup, queues: frozenset[str]) -> None:
        self.wakeup = wakeup
        self.queues = queues
        self.listening = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"bourbon-{self.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def wanted(self, queue_name: str) -> bool:
        return not self.queues or queue_name in self.queues

    def connect(self) -> Any:
        raise NotImplementedError

    def relay(self, conn: Any) -> None:
        """Poke the wakeup for each message until the connection fails or the source stops."""
        raise NotImplementedError

    def close(self, conn: Any) -> None:
        conn.close()

    def _run(self) -> None:
        delay = 0.1
        while not self._stopping.is_set():
            try:
                conn = self.connect()
            except Exception as exc:  # noqa: BLE001  (any client error means: poll and retry)
                if delay == 0.1:
                    logger.warning(
                        "%s unavailable (%s); polling the database until it is back", self.name, exc
                    )
                self._stopping.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            if delay > 0.1:
                logger.warning("%s is back; idle workers wake on it again", self.name)
            delay = 0.1
            self.listening.set()
            # Anything enqueued before this connection listened was announced to
            # nobody: one poll now closes that gap (at start and after each reconnect).
            self.wakeup.poke()
            try:
                self.relay(conn)
            except Exception as exc:  # noqa: BLE001
                logger.warning("%s connection lost (%s); polling until it is back", self.name, exc)
                delay = 0.2
            finally:
                self.listening.clear()
                self.wakeup.poke()
                self.close(conn)


class PostgresListener(Source):
    """LISTEN on a dedicated psycopg 3 connection."""

    name = "PostgreSQL LISTEN"

    def __init__(self, wakeup: Wakeup, queues: frozenset[str], using: str) -> None:
        super().__init__(wakeup, queues)
        self.using = using

    def connect(self) -> Any:
        import psycopg

        params = connections[self.using].get_connection_params()
        for key in ("cursor_factory", "context", "server_side_binding"):
            params.pop(key, None)
        conn = psycopg.connect(**params, autocommit=True)
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def relay(self, conn: Any) -> None:
        while not self._stopping.is_set():
            for notify in conn.notifies(timeout=1.0):
                if self.wanted(notify.payload):
                    self.wakeup.poke()


class RedisListener(Source):
    """SUBSCRIBE on a django-redis connection; pokes the wakeup for jobs on the worker's queues."""

    name = "Redis pub/sub"

    def __init__(self, wakeup: Wakeup, queues: frozenset[str], alias: str) -> None:
        super().__init__(wakeup, queues)
        self.alias = alias

    def connect(self) -> Any:
        pubsub = redis_channels.connection(self.alias).pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(redis_channels.enqueued_channel())
        return pubsub

    def relay(self, pubsub: Any) -> None:
        while not self._stopping.is_set():
            message = pubsub.get_message(timeout=1.0)
            if message and self.wanted(_text(message["data"])):
                self.wakeup.poke()

    def close(self, pubsub: Any) -> None:
        try:
            pubsub.close()
        except Exception:  # noqa: BLE001  (closing a dead connection may fail; nothing to do)
            pass


def _text(data: Any) -> str:
    return data.decode() if isinstance(data, bytes) else str(data)


def wakeup_for(using: str, queues: frozenset[str]) -> Wakeup:
    """LISTEN/NOTIFY where the database offers it (:func:`workers_listen`), else Redis if configured."""
    sources: list[Callable[[Wakeup], Source]] = []
    redis_alias = redis_channels.configured_alias()
    if workers_listen(using):
        sources.append(lambda wakeup: PostgresListener(wakeup, queues, using))
    elif redis_alias:
        sources.append(lambda wakeup: RedisListener(wakeup, queues, redis_alias))
    return Wakeup(sources)
