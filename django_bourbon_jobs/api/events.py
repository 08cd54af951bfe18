"""Server-Sent Events for one job: an event per status or progress change, until it finishes.

Each event's ``id`` is a digest of the state it carries: a client that reconnects
with ``Last-Event-ID`` gets the current state unless it already has it, so it never
misses the final one.

The stream reads the job from the database, and closes its connection after every
read, so an idle client holds a thread but no database connection. When it reads
is up to :class:`~django_bourbon_jobs.subscribe.JobEvents`: with Redis, when the
job's channel says it changed (and at each heartbeat, for changes nobody
announced); without Redis, or while it is down, every ``poll_interval``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import router
from django.db.models import Q
from django.utils import timezone
from rest_framework.renderers import BaseRenderer

from django_bourbon_jobs.events.sse import event_id, format_event
from django_bourbon_jobs.events.stream import Event, EventStream
from django_bourbon_jobs.events.subscribe import JobEvents, release_connection
from django_bourbon_jobs.models import FINISHED_STATUSES, Job, JobStatus


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


@dataclass
class JobStream(EventStream):
    """Follows one job and yields SSE text; ``represent`` turns a Job into the event's JSON object.

    The job is read again after every wake-up (a Redis message, a poll, a heartbeat), never
    taken from the message, so each event is exactly what polling would have sent.
    """

    queryset: Any
    job_id: Any
    represent: Callable[[Job], dict[str, Any]]
    last_event_id: str | None = None
    poll_interval: float = 0.5
    heartbeat_interval: float = 15.0
    max_seconds: float = 300.0

    def __post_init__(self) -> None:
        super().__init__()
        self.sent: tuple[str, int, bool] | None = None

    def subscribe(self) -> JobEvents:
        return JobEvents.for_job(self.job_id, self.poll_interval)

    def fetch(self) -> Job | None:
        """One query, then the connection is closed: nothing is held while the client waits."""
        try:
            return self.queryset.filter(pk=self.job_id).first()  # type: ignore[no-any-return]
        finally:
            release_connection(router.db_for_read(Job))

    def snapshot(self, job: Job) -> tuple[str, str]:
        """The event data for ``job``, and its id."""
        data = json.dumps(self.represent(job), cls=DjangoJSONEncoder, sort_keys=True)
        return data, event_id(data)

    def updates(self) -> Iterator[Event]:
        if not self.take_read():
            return
        job = self.fetch()
        if job is None:
            self.done = True
            yield Event("gone", json.dumps({"job_id": str(self.job_id)}))
            return
        data, digest = self.snapshot(job)
        if digest != self.last_event_id:
            state = (job.status, job.attempts, job.cancel_requested_at is not None)
            yield Event("status" if state != self.sent else "progress", data, digest)
            self.sent, self.last_event_id = state, digest
        self.done = job.status in FINISHED_STATUSES


@dataclass
class JobsStream(EventStream):
    """Follows every job of ``queryset`` (the caller's visible jobs) and yields an event per change.

    It first sends each open job (queued, waiting or running), then every job that changes or is
    dispatched while it runs, as :class:`JobStream` would, reading at most once per
    ``min_gap``: with Redis on any job's event, without it every ``poll_interval``.
    ``limit`` bounds how many jobs one read looks at (the newest).
    """

    queryset: Any
    represent: Callable[[Job], dict[str, Any]]
    poll_interval: float = 0.5
    min_gap: float = 0.25
    limit: int = 200
    heartbeat_interval: float = 15.0
    max_seconds: float = 300.0

    def __post_init__(self) -> None:
        super().__init__()
        self.opened = timezone.now()
        self.seen: dict[str, tuple[str, tuple[str, int, bool]]] = {}

    def subscribe(self) -> JobEvents:
        return JobEvents.for_all_jobs(self.poll_interval)

    def read(self) -> list[Job]:
        recent = Q(status__in=[JobStatus.QUEUED, JobStatus.WAITING, JobStatus.RUNNING])
        recent |= Q(enqueued_at__gte=self.opened)
        recent |= Q(finished_at__gte=self.opened)
        try:
            return list(self.queryset.filter(recent).order_by("-enqueued_at")[: self.limit])
        finally:
            release_connection(router.db_for_read(Job))

    def updates(self) -> Iterator[Event]:
        if not self.take_read():
            return
        for job in reversed(self.read()):
            data = json.dumps(self.represent(job), cls=DjangoJSONEncoder, sort_keys=True)
            digest, state = event_id(data), (job.status, job.attempts, job.cancel_requested_at is not None)
            before = self.seen.get(str(job.pk))
            if before is not None and before[0] == digest:
                continue
            self.seen[str(job.pk)] = (digest, state)
            yield Event("status" if before is None or before[1] != state else "progress", data, digest)
