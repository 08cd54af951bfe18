"""The dashboard's live stream: a ``changed`` event whenever its numbers moved, and the page refreshes them.

With Redis, the stream wakes on every job's events and on new jobs (``PSUBSCRIBE
bourbon_jobs:job:*``, ``SUBSCRIBE bourbon_jobs:enqueued``), at most once per
``min_gap``; without Redis, or while it is down, every ``poll_interval``; and in
either case at each heartbeat, for changes nobody announced (deleted or pruned
jobs, a worker that came or went). Waking, it reads the dashboard's
:func:`~django_bourbon_jobs.admin.dashboard.fingerprint` (two small queries) and
sends ``changed`` only when it differs from what the page shows, its id the new
fingerprint: the page sends its own as ``?since=``, and a reconnecting browser
sends the last one as ``Last-Event-ID``, so no change is missed in between.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import router

from django_bourbon_jobs.admin.dashboard import fingerprint, status_counts
from django_bourbon_jobs.job_events import JobEvents, release_connection
from django_bourbon_jobs.models import Job, Worker
from django_bourbon_jobs.sse import HEARTBEAT, RETRY, format_event


@dataclass
class DashboardStream:
    """Yields SSE text: ``changed`` with the fresh status counts whenever the fingerprint moves."""

    since: str | None = None
    poll_interval: float = 5.0
    min_gap: float = 1.0
    heartbeat_interval: float = 15.0
    max_seconds: float = 300.0

    def read(self) -> tuple[dict[str, Any], str]:
        """The event's data and the fingerprint; the connection is closed after the two queries."""
        try:
            counts = status_counts()
            worker_ids = list(Worker.objects.order_by("pk").values_list("pk", flat=True))
        finally:
            release_connection(router.db_for_read(Job))
        data = {"status_counts": {value: n for value, _, n in counts}, "workers": len(worker_ids)}
        return data, fingerprint(counts, worker_ids)

    def __iter__(self) -> Iterator[str]:
        yield RETRY
        started = last_write = time.monotonic()
        shown, last_read = self.since, -math.inf
        due = True  # the page may be older than this connection
        with JobEvents.for_all_jobs(self.poll_interval) as events:
            while True:
                if due and time.monotonic() - last_read >= self.min_gap:
                    due, last_read = False, time.monotonic()
                    data, current = self.read()
                    if current != shown:
                        yield format_event("changed", json.dumps(data), current)
                        shown, last_write = current, time.monotonic()
                if time.monotonic() - started >= self.max_seconds:
                    return
                if events.wait(self.seconds_to_wait(started, last_write, last_read if due else None)):
                    due = True
                if time.monotonic() - last_write >= self.heartbeat_interval:
                    yield HEARTBEAT
                    due, last_write = True, time.monotonic()

    def seconds_to_wait(self, started: float, last_write: float, held_since: float | None) -> float:
        """Until the next heartbeat or the end; while a read is held back by ``min_gap``, until it may run.

        Waiting (rather than sleeping) through ``min_gap`` keeps taking Redis messages off
        the socket, so a busy system never backs up a dashboard's subscription.
        """
        until = min(last_write + self.heartbeat_interval, started + self.max_seconds)
        if held_since is not None:
            until = min(until, held_since + self.min_gap)
        return until - time.monotonic()
