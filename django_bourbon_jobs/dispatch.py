"""``dispatch_async`` and ``get_result``: the Bourbon surface over Django's Tasks API."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import router, transaction
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, Task, TaskResult, task_backends
from django.utils import timezone

from django_bourbon_jobs import store
from django_bourbon_jobs.callbacks import check_callback_url
from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.tasks import UNIQUE_SCOPES, BourbonTask

DISPATCH_OPTIONS = frozenset(
    {
        "queue_name",
        "priority",
        "run_after",
        "delay",
        "dispatched_by",
        "idempotency_key",
        "callback_url",
        "unique_key",
        "unique_while",
    }
)


def _with_extras(task: Task, options: dict[str, Any]) -> Task:
    """The task carrying ``dispatched_by``, ``idempotency_key`` and ``callback_url`` for the backend.

    Only our backend's tasks (:class:`~django_bourbon_jobs.tasks.BourbonTask`) can carry
    them; another backend's would not store them, so a dispatch that names one is refused.
    """
    callback_url = options.get("callback_url") or getattr(task, "callback_url", None) or None
    if callback_url:
        check_callback_url(callback_url)
    dispatched_by, key = options.get("dispatched_by"), options.get("idempotency_key") or ""
    if isinstance(task, BourbonTask):
        return task.for_dispatch(dispatched_by, key, callback_url, _unique(task, options))
    if key or callback_url or dispatched_by is not None or {"unique_key", "unique_while"} & set(options):
        raise TypeError(
            f"{task.name}'s backend cannot record dispatched_by, idempotency_key, callback_url or "
            "unique_key: use django_bourbon_jobs.backends.DatabaseBackend."
        )
    return task


def _unique(task: BourbonTask, options: dict[str, Any]) -> tuple[Any, str] | None:
    """A dispatch's ``(unique_key, unique_while)`` (the task's by default); ``None`` if it names neither."""
    if "unique_key" not in options and "unique_while" not in options:
        return None
    key, scope = options.get("unique_key", task.unique_key), options.get("unique_while", task.unique_while)
    if key is not None and not isinstance(key, str):
        raise TypeError(f"unique_key must be a string (got {key!r}).")
    if scope not in UNIQUE_SCOPES:
        raise ValueError(
            f"unique_while must be one of {', '.join(map(repr, UNIQUE_SCOPES))} (got {scope!r})."
        )
    return key, scope


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


def prepared_task(handler: Task, options: dict[str, Any]) -> Task:
    """``handler`` with :func:`dispatch_async`'s options applied, ready for its backend."""
    return _with_extras(_prepared(handler, options), options)


def dispatch_async(handler: Task, payload: Any = None, **options: Any) -> TaskResult:
    """Queue ``handler(payload)`` and return its ``TaskResult`` at once; ``result.id`` is the job id.

    Options: ``queue_name``, ``priority``, ``run_after`` (an aware datetime) or
    ``delay`` (seconds or a ``timedelta``); ``dispatched_by`` (a user, recorded on
    the job; ``request.dispatch_async`` passes the request's user);
    ``idempotency_key`` (a repeat from the same dispatcher within
    ``IDEMPOTENCY_WINDOW`` returns the first job); ``callback_url`` (a webhook
    for the final state; its host must be in ``WEBHOOK_ALLOWED_HOSTS``);
    ``unique_key`` and ``unique_while`` (``"active"`` or ``"queued"``): while a job of
    this task with that key is in scope, the dispatch returns it and writes nothing.
    """
    task = prepared_task(handler, options)
    if not getattr(task, "idempotency_key", ""):
        return task.enqueue(payload)
    return _enqueue_once(task, payload)


def _enqueue_once(task: Task, payload: Any) -> TaskResult:
    """Enqueue unless this dispatcher used the key within the window; serialised per key.

    The store serialises dispatches of one (dispatcher, key) pair: PostgreSQL with an
    advisory lock, SQLite with its write lock (``transaction_mode = "IMMEDIATE"``).
    """
    from django_bourbon_jobs.models import Job
    from django_bourbon_jobs.results import to_task_result

    using = router.db_for_write(Job)
    dispatched_by, key = getattr(task, "dispatched_by", None), getattr(task, "idempotency_key", "")
    user = dispatched_by if getattr(dispatched_by, "is_authenticated", False) else None
    since = timezone.now() - timedelta(seconds=get_settings().IDEMPOTENCY_WINDOW)
    with transaction.atomic(using=using):
        store.for_connection(using).lock_idempotency_key(using, f"bourbon:{getattr(user, 'pk', '')}:{key}")
        first = (
            Job.objects.db_manager(using)
            .filter(dispatched_by=user, idempotency_key=key, enqueued_at__gte=since)
            .order_by("enqueued_at")
            .first()
        )
        if first is not None:
            return to_task_result(first, task.backend)
        return task.enqueue(payload)


def dispatch_many(handler: Task, payloads: Iterable[Any], **options: Any) -> list[TaskResult]:
    """Queue ``handler(payload)`` for every payload in a few multi-row INSERTs: fan-out.

    Takes the options of :func:`dispatch_async`. All or nothing: one payload that
    is not JSON raises ``InvalidPayload`` and no job is written. The task's
    backend must provide ``enqueue_many`` (``DatabaseBackend`` does).
    """
    task = prepared_task(handler, options)
    backend = task.get_backend()
    if not hasattr(backend, "enqueue_many"):
        raise TypeError(f"Backend {type(backend).__name__} cannot enqueue in bulk; use dispatch_async().")
    if options.get("idempotency_key") or options.get("unique_key"):
        raise TypeError(
            "dispatch_many() takes no idempotency_key or unique_key: give each job its own dispatch_async()."
        )
    return backend.enqueue_many(task, [((payload,), {}) for payload in payloads])  # type: ignore[no-any-return]


def get_result(job_id: str, backend: str = DEFAULT_TASK_BACKEND_ALIAS) -> TaskResult:
    """The job's current ``TaskResult``; raises ``TaskResultDoesNotExist`` for an unknown id."""
    return task_backends[backend].get_result(str(job_id))
