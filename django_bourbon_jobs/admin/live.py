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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import router

from django_bourbon_jobs.admin.dashboard import fingerprint, status_counts
from django_bourbon_jobs.events.stream import Event, EventStream
from django_bourbon_jobs.events.subscribe import JobEvents, release_connection
from django_bourbon_jobs.models import Job, Worker


@dataclass
class DashboardStream(EventStream):
    """Yields SSE text: ``changed`` with the fresh status counts whenever the fingerprint moves."""

    since: str | None = None
    poll_interval: float = 5.0
    min_gap: float = 1.0
    heartbeat_interval: float = 15.0
    max_seconds: float = 300.0

    def __post_init__(self) -> None:
        super().__init__()  # a read is due at once: the page may be older than this connection
        self.shown = self.since

    def subscribe(self) -> JobEvents:
        return JobEvents.for_all_jobs(self.poll_interval)

    def read(self) -> tuple[dict[str, Any], str]:
        """The event's data and the fingerprint; the connection is closed after the two queries."""
        try:
            counts = status_counts()
            worker_ids = list(Worker.objects.order_by("pk").values_list("pk", flat=True))
        finally:
            release_connection(router.db_for_read(Job))
        data = {"status_counts": {value: n for value, _, n in counts}, "workers": len(worker_ids)}
        return data, fingerprint(counts, worker_ids)

    def updates(self) -> Iterator[Event]:
        """At most one read per ``min_gap``; a due read waits until then (see :meth:`next_read_at`)."""
        if not self.take_read():
            return
        data, current = self.read()
        if current != self.shown:
            self.shown = current
            yield Event("changed", json.dumps(data), current)
