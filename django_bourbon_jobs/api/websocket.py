"""Live job updates over WebSocket (Django Channels): one job's events, or all of the caller's jobs.

``pip install "django-bourbon-jobs[websocket]"``, then route
:data:`websocket_urlpatterns` in your ASGI application (see ``docs/api.md``)::

    ws/jobs/<id>/       one job's events until it finishes, as its Server-Sent Events stream sends them
    ws/jobs/            every job of the caller: the open ones at once, then each change
    ws/workflows/<id>/  one workflow's events (``workflow``, ``step``) until it finishes

Each message is a JSON text frame ``{"event", "id", "data"}`` (``status``,
``progress``, ``gone``, ``heartbeat``), ``data`` being the job as ``GET /jobs/{id}/``
shows it. The same rules as the HTTP API: the user comes from Django's session
(Channels' ``AuthMiddlewareStack``); a user sees their own jobs, ``view_job`` sees
all; a job one may not see is refused exactly as a missing one is (close code
4404 before the handshake completes); an anonymous user gets 4401, and a user over
``STREAMS_PER_USER`` or a process over ``STREAMS_PER_PROCESS`` 4429. The stream is
an :class:`~django_bourbon_jobs.events.stream.EventStream`, run on a thread of its
own (:class:`~django_bourbon_jobs.events.stream.Pump`) as under SSE, holding no
database connection while it waits.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.core.exceptions import ValidationError
from django.urls import path

from django_bourbon_jobs.api.events import JobsStream, JobStream
from django_bourbon_jobs.api.serializers import JobSerializer
from django_bourbon_jobs.api.workflows import StepSerializer, WorkflowSerializer, WorkflowStream
from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.events.sse import TooManyStreams, slots
from django_bourbon_jobs.events.stream import END, OPENING, EventStream, Pump
from django_bourbon_jobs.permissions import visible_jobs, visible_workflows

NOT_AUTHENTICATED, NOT_FOUND, TOO_MANY = 4401, 4404, 4429


class _ScopeRequest:
    """What the serializer needs of a request, taken from the WebSocket's scope: the user, absolute URLs."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.user = scope.get("user")
        headers = dict(scope.get("headers", ()))
        self.host = headers.get(b"host", b"").decode("latin-1")
        self.scheme = "https" if scope.get("scheme") == "wss" else "http"

    def build_absolute_uri(self, location: str) -> str:
        return f"{self.scheme}://{self.host}{location}" if self.host else location


class JobEventsConsumer(AsyncWebsocketConsumer):
    """Sends a job stream's events as JSON text frames; see the module's docstring."""

    poll_interval = 0.5
    heartbeat_interval = 15.0
    max_seconds = 300.0
    """A stream ends after this long (close code 1000); a client that reconnects gets the current state."""

    pump_task: asyncio.Task[None] | None = None
    release: Any = None
    id_kwarg = "job_id"
    """The route's keyword that names what to follow."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if not getattr(user, "is_authenticated", False):
            await self.close(code=NOT_AUTHENTICATED)
            return
        stream = await database_sync_to_async(self.build_stream)(
            self.scope["url_route"]["kwargs"].get(self.id_kwarg)
        )
        if stream is None:
            await self.close(code=NOT_FOUND)
            return
        limits = get_settings()
        try:
            self.release = slots.take(user.pk, limits.STREAMS_PER_USER, limits.STREAMS_PER_PROCESS)
        except TooManyStreams:
            await self.close(code=TOO_MANY)
            return
        await self.accept()
        self.pump_task = asyncio.create_task(self.send_events(stream))

    def build_stream(self, job_id: str | None) -> EventStream | None:
        """The stream for this socket, or None for a job the user may not see (or that is missing)."""
        request = _ScopeRequest(self.scope)
        jobs = visible_jobs(request.user)

        def represent(job: Any) -> dict[str, Any]:
            return dict(JobSerializer(job, context={"request": request}).data)

        stream: EventStream
        if job_id is None:
            stream = JobsStream(jobs, represent, poll_interval=self.poll_interval)
        elif not _exists(jobs, job_id):
            return None
        else:
            stream = JobStream(jobs, job_id, represent, poll_interval=self.poll_interval)
        stream.heartbeat_interval, stream.max_seconds = self.heartbeat_interval, self.max_seconds
        return stream

    async def send_events(self, stream: EventStream) -> None:
        iterator = iter(stream)
        pump = Pump(iterator, iterator.close)  # type: ignore[attr-defined]
        try:
            while (event := await pump.next()) is not END:
                if event is not OPENING:
                    await self.send(text_data=event.as_json())
            await self.close()
        finally:
            pump.stop()
            self.give_back()

    async def disconnect(self, code: int) -> None:
        if self.pump_task is not None:
            self.pump_task.cancel()
        self.give_back()

    def give_back(self) -> None:
        if self.release is not None:
            self.release()


def _exists(jobs: Any, job_id: str) -> bool:
    try:
        return bool(jobs.filter(pk=job_id).exists())
    except (ValueError, ValidationError):  # a malformed id is a missing job
        return False


class WorkflowEventsConsumer(JobEventsConsumer):
    """One workflow's events, as its Server-Sent Events stream sends them."""

    id_kwarg = "workflow_id"

    def build_stream(self, workflow_id: str | None) -> EventStream | None:
        request = _ScopeRequest(self.scope)
        workflows = visible_workflows(request.user)
        if workflow_id is None or not _exists(workflows, workflow_id):
            return None
        context = {"request": request}
        stream = WorkflowStream(
            queryset=workflows,
            workflow_id=workflows.get(pk=workflow_id).pk,
            represent=lambda row: dict(WorkflowSerializer(row, context=context).data),
            represent_step=lambda step: dict(StepSerializer(step, context=context).data),
            poll_interval=self.poll_interval,
        )
        stream.heartbeat_interval, stream.max_seconds = self.heartbeat_interval, self.max_seconds
        return stream


websocket_urlpatterns = [
    path("ws/jobs/", JobEventsConsumer.as_asgi()),
    path("ws/jobs/<str:job_id>/", JobEventsConsumer.as_asgi()),
    path("ws/workflows/<str:workflow_id>/", WorkflowEventsConsumer.as_asgi()),
]
"""Route these in your ASGI application's ``"websocket"`` branch (under ``URLRouter``)."""
