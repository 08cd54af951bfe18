"""Waiting for job events: Redis pub/sub when it is configured and answers, database polling otherwise.

A reader (the API's job stream, the admin dashboard's stream) subscribes *before*
its first read of the database, so no change between that read and the
subscription goes unheard; then it reads again each time :meth:`JobEvents.wait`
returns True. A message is only a wake-up: what the reader sends is what the
database holds (the system of record), so a lost, late or repeated message can
delay an update but never make one wrong.

Without Redis, or while it is unreachable, ``wait()`` returns True once per
``poll_interval`` and, every so often (0.1 s doubling to 5 s), tries to subscribe
again; it returns True right after it succeeds, since whatever was published while
nobody listened is lost. An outage is logged once per process, and so is its end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from django.db import connections

from django_bourbon_jobs import fastpath

logger = logging.getLogger("django_bourbon_jobs.job_events")

FIRST_RETRY = 0.1
MAX_RETRY = 5.0
CONFIRM_TIMEOUT = 2.0
"""Seconds Redis gets to acknowledge a subscription before it counts as unreachable."""
DRAIN_LIMIT = 1000
"""Messages taken per wake-up; a burst beyond it wakes the reader once more."""


class _Outages:
    """The Redis aliases this process found unreachable: each outage is logged once, and so is its end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down: set[str] = set()

    def lost(self, alias: str, exc: Exception) -> None:
        with self._lock:
            if alias in self._down:
                return
            self._down.add(alias)
        logger.warning(
            "Redis %r unavailable for job events (%s); reading the database every poll interval "
            "until it is back",
            alias,
            exc,
        )

    def back(self, alias: str) -> None:
        with self._lock:
            if alias not in self._down:
                return
            self._down.discard(alias)
        logger.warning("Redis %r is back; job events come from pub/sub again", alias)


outages = _Outages()


class JobEvents:
    """Subscribes to job channels (or patterns) on entering; :meth:`wait` says when to read again."""

    def __init__(
        self,
        alias: str | None,
        poll_interval: float,
        channels: Sequence[str] = (),
        patterns: Sequence[str] = (),
    ) -> None:
        self.alias = alias
        self.poll_interval = poll_interval
        self.channels = list(channels)
        self.patterns = list(patterns)
        self._pubsub: Any = None
        self._next_poll = 0.0
        self._retry_delay = FIRST_RETRY
        self._next_retry = 0.0

    @classmethod
    def for_job(cls, job_id: object, poll_interval: float) -> JobEvents:
        return cls(fastpath.configured_alias(), poll_interval, channels=[fastpath.job_channel(job_id)])

    @classmethod
    def for_all_jobs(cls, poll_interval: float) -> JobEvents:
        """Every job's changes, and new jobs: whatever moves the dashboard's numbers."""
        return cls(
            fastpath.configured_alias(),
            poll_interval,
            channels=[fastpath.enqueued_channel()],
            patterns=[fastpath.job_channel("*")],
        )

    @property
    def listening(self) -> bool:
        """True while events come from Redis, False while the database is polled."""
        return self._pubsub is not None

    def __enter__(self) -> JobEvents:
        self._subscribe()
        self._next_poll = time.monotonic() + self.poll_interval
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._close()

    def wait(self, timeout: float) -> bool:
        """Block at most ``timeout`` seconds; True means: read the database now."""
        if self._pubsub is not None:
            return self._wait_for_message(timeout)
        return self._wait_for_poll(timeout)

    def _wait_for_message(self, timeout: float) -> bool:
        try:
            if self._pubsub.get_message(timeout=max(timeout, 0.0)) is None:
                return False
            self._drain()
        except Exception as exc:  # noqa: BLE001  (any client error means: poll until Redis answers)
            self._close()
            self._lost(exc)
            self._next_poll = time.monotonic() + self.poll_interval
        # A message, a subscription confirmed again after a reconnect (what was published
        # meanwhile is lost), or the connection gone: in each case the database knows better.
        return True

    def _drain(self) -> None:
        """Take what else arrived meanwhile: one read of the database answers them all."""
        for _ in range(DRAIN_LIMIT):
            if self._pubsub.get_message(timeout=0.0) is None:
                return

    def _wait_for_poll(self, timeout: float) -> bool:
        now = time.monotonic()
        wake_at = min(self._next_poll, now + max(timeout, 0.0))
        if self.alias is not None:
            wake_at = min(wake_at, self._next_retry)
        time.sleep(max(wake_at - now, 0.0))
        if self.alias is not None and time.monotonic() >= self._next_retry and self._subscribe():
            return True
        if time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + self.poll_interval
            return True
        return False

    def _subscribe(self) -> bool:
        if self.alias is None:
            return False
        pubsub = None
        try:
            pubsub = fastpath.connection(self.alias).pubsub()
            if self.channels:
                pubsub.subscribe(*self.channels)
            if self.patterns:
                pubsub.psubscribe(*self.patterns)
            _confirm(pubsub, len(self.channels) + len(self.patterns))
        except Exception as exc:  # noqa: BLE001  (Redis down: poll, and try again later)
            if pubsub is not None:
                _close_quietly(pubsub)
            self._lost(exc)
            return False
        self._pubsub = pubsub
        self._retry_delay = FIRST_RETRY
        outages.back(self.alias)
        return True

    def _lost(self, exc: Exception) -> None:
        assert self.alias is not None
        outages.lost(self.alias, exc)
        self._next_retry = time.monotonic() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, MAX_RETRY)

    def _close(self) -> None:
        if self._pubsub is not None:
            _close_quietly(self._pubsub)
            self._pubsub = None


def _confirm(pubsub: Any, count: int) -> None:
    """Wait until Redis has acknowledged every subscription: from then on, nothing published is missed."""
    deadline = time.monotonic() + CONFIRM_TIMEOUT
    while count > 0:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("Redis did not acknowledge the subscription in time")
        message = pubsub.get_message(timeout=left)
        if message is not None and message["type"] in ("subscribe", "psubscribe"):
            count -= 1


def _close_quietly(pubsub: Any) -> None:
    try:
        pubsub.close()
    except Exception:  # noqa: BLE001  (closing a dead connection may fail; nothing to do)
        pass


def release_connection(using: str) -> None:
    """Close the connection after a read: a waiting reader holds a thread, but no database connection."""
    connection = connections[using]
    if not connection.in_atomic_block:
        connection.close()
