"""``dispatch_async`` and ``get_result``: the Bourbon surface over Django's Tasks API."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, Task, TaskResult, task_backends
from django.utils import timezone

from django_bourbon_jobs import log

DISPATCH_OPTIONS = frozenset({"queue_name", "priority", "run_after", "delay", "dispatched_by"})

dispatching_user: ContextVar[Any] = ContextVar("dispatching_user", default=None)
"""The user a dispatch is made for; the backend stores it on the job (Django's enqueue has no slot for it)."""


def _run_after(run_after: datetime | None, delay: float | timedelta | None) -> datetime | None:
    if run_after is not None and delay is not None:
        raise TypeError("Pass run_after or delay, not both.")
    if delay is None:
        return run_after
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
    if seconds < 0:
        raise ValueError("delay must not be negative.")
    return timezone.now() + timedelta(seconds=seconds)


def _prepared(handler: Task, options: dict[str, Any]) -> Task:
    """The handler with the dispatch options applied; ``TypeError`` for a non-task or unknown option."""
    if not isinstance(handler, Task):
        name = getattr(handler, "__qualname__", repr(handler))
        raise TypeError(
            f"dispatch_async() needs a task, but {name} is not one: decorate it with "
            "@task (from django.tasks import task)."
        )
    unknown = set(options) - DISPATCH_OPTIONS
    if unknown:
        raise TypeError(f"dispatch_async() got unknown options: {', '.join(sorted(unknown))}.")
    run_after = _run_after(options.get("run_after"), options.get("delay"))
    return handler.using(
        queue_name=options.get("queue_name"), priority=options.get("priority"), run_after=run_after
    )


def dispatch_async(handler: Task, payload: Any = None, **options: Any) -> TaskResult:
    """Queue ``handler(payload)`` and return its ``TaskResult`` at once; ``result.id`` is the job id.

    Options: ``queue_name``, ``priority``, ``run_after`` (an aware datetime) or
    ``delay`` (seconds or a ``timedelta``), and ``dispatched_by`` (a user, recorded
    on the job; ``request.dispatch_async`` passes the request's user).
    """
    task = _prepared(handler, options)
    token = dispatching_user.set(options.get("dispatched_by"))
    try:
        return task.enqueue(payload)
    finally:
        dispatching_user.reset(token)


def dispatch_many(handler: Task, payloads: Iterable[Any], **options: Any) -> list[TaskResult]:
    """Queue ``handler(payload)`` for every payload in a few multi-row INSERTs: fan-out.

    Takes the options of :func:`dispatch_async`. All or nothing: one payload that
    is not JSON raises ``InvalidPayload`` and no job is written. The task's
    backend must provide ``enqueue_many`` (``DatabaseBackend`` does).
    """
    task = _prepared(handler, options)
    backend = task.get_backend()
    if not hasattr(backend, "enqueue_many"):
        raise TypeError(f"Backend {type(backend).__name__} cannot enqueue in bulk; use dispatch_async().")
    token = dispatching_user.set(options.get("dispatched_by"))
    try:
        return backend.enqueue_many(task, [((payload,), {}) for payload in payloads])  # type: ignore[no-any-return]
    finally:
        dispatching_user.reset(token)


def cancel(job_id: str) -> bool:
    """Cancel a queued job; false if it is unknown, already running or finished."""
    from django_bourbon_jobs.models import Job

    try:
        job_uuid = uuid.UUID(str(job_id))
    except ValueError:
        return False
    if not Job.objects.filter(pk=job_uuid).cancel(timezone.now()):
        return False
    log.job_event(Job.objects.get(pk=job_uuid), "cancelled")
    return True


def get_result(job_id: str, backend: str = DEFAULT_TASK_BACKEND_ALIAS) -> TaskResult:
    """The job's current ``TaskResult``; raises ``TaskResultDoesNotExist`` for an unknown id."""
    return task_backends[backend].get_result(str(job_id))
