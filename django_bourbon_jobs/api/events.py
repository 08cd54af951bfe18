"""Server-Sent Events for one job: an event per status or progress change, until it finishes.

The stream polls the database and closes its connection after every poll, so an
idle client holds a thread but no database connection. Each event's ``id`` is a
digest of the state it carries: a client that reconnects with ``Last-Event-ID``
gets the current state unless it already has it, so it never misses the final one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, router
from rest_framework.renderers import BaseRenderer

from django_bourbon_jobs.models import FINISHED_STATUSES, Job

RECONNECT_MS = 2000
"""The ``retry:`` the stream announces: how long a browser waits before reconnecting."""


class EventStreamRenderer(BaseRenderer):
    """Lets ``Accept: text/event-stream`` through negotiation; renders errors as one ``error`` event."""

    media_type = "text/event-stream"
    format = "event-stream"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        if isinstance(data, bytes):
            return data
        return format_event("error", json.dumps(data, cls=DjangoJSONEncoder), None).encode()


def format_event(event: str, data: str, event_id: str | None) -> str:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.extend(f"data: {line}" for line in data.splitlines() or [""])
    return "\n".join(lines) + "\n\n"


def event_id(data: str) -> str:
    """A digest of the state: equal ids mean the client already has this state."""
    return hashlib.sha256(data.encode()).hexdigest()[:20]


@dataclass
class JobStream:
    """Polls one job and yields SSE text; ``represent`` turns a Job into the event's JSON object."""

    queryset: Any
    job_id: Any
    represent: Callable[[Job], dict[str, Any]]
    last_event_id: str | None = None
    poll_interval: float = 0.5
    heartbeat_interval: float = 15.0
    max_seconds: float = 300.0

    def fetch(self) -> Job | None:
        """One query, then the connection is closed: nothing is held while the client waits."""
        try:
            return self.queryset.filter(pk=self.job_id).first()  # type: ignore[no-any-return]
        finally:
            connection = connections[router.db_for_read(Job)]
            if not connection.in_atomic_block:
                connection.close()

    def snapshot(self, job: Job) -> tuple[str, str]:
        """The event data for ``job``, and its id."""
        data = json.dumps(self.represent(job), cls=DjangoJSONEncoder, sort_keys=True)
        return data, event_id(data)

    def __iter__(self) -> Iterator[str]:
        yield f"retry: {RECONNECT_MS}\n\n"
        started = last_write = time.monotonic()
        sent: tuple[str, int, bool] | None = None
        job = self.fetch()
        while job is not None:
            data, digest = self.snapshot(job)
            if digest != self.last_event_id:
                state = (job.status, job.attempts, job.cancel_requested_at is not None)
                yield format_event("status" if state != sent else "progress", data, digest)
                sent, self.last_event_id, last_write = state, digest, time.monotonic()
            if job.status in FINISHED_STATUSES or time.monotonic() - started >= self.max_seconds:
                return
            time.sleep(self.poll_interval)
            if time.monotonic() - last_write >= self.heartbeat_interval:
                yield ": heartbeat\n\n"
                last_write = time.monotonic()
            job = self.fetch()
        yield format_event("gone", json.dumps({"job_id": str(self.job_id)}), None)
