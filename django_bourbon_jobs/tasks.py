"""Our ``django.tasks`` Task subclass: the retry, timeout and flow-control options.

Django 6.1's ``@task`` passes extra keyword arguments to the backend's
``task_class``, so ``@task(max_attempts=5, timeout=30, backoff=...)`` builds one
of these when the task's backend is :class:`DatabaseBackend`. The names follow
Django's open proposals for the Tasks framework; ``concurrency``, ``rate_limit`` and
``circuit_breaker`` are ours (:mod:`~django_bourbon_jobs.limits`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.tasks import Task

from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.limits import LimitSpec, task_spec

if TYPE_CHECKING:
    from django.tasks import TaskResult

Backoff = Callable[[BaseException, "TaskResult"], float | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class BourbonTask(Task):
    max_attempts: int | None = None
    """Attempts before the job fails for good; ``None`` uses ``DEFAULT_MAX_ATTEMPTS``."""
    backoff: Backoff | None = None
    """``backoff(exception, task_result)`` returns seconds until the next attempt, or ``None`` to stop."""
    timeout: float | None = None
    """Seconds one attempt may run; ``None`` uses ``DEFAULT_TIMEOUT``."""
    callback_url: str | None = None
    """Default webhook URL for this task's final state, when a dispatch names none."""
    dispatched_by: Any = dataclasses.field(default=None, compare=False, repr=False)
    """The user a dispatch records (``dispatch_async(..., dispatched_by=user)``); set per dispatch."""
    idempotency_key: str = ""
    """The dispatch's idempotency key; set per dispatch."""
    concurrency: int | None = None
    """At most this many attempts of the task run at once, across every worker (docs/flow-control.md)."""
    rate_limit: str | None = None
    """At most N starts in any window: ``"100/m"`` (per ``s``, ``m`` or ``h``)."""
    circuit_breaker: Mapping[str, float] | None = dataclasses.field(default=None, hash=False)
    """``{"threshold": 5, "cooldown": 30}``: after 5 consecutive failed attempts, start none for 30 s."""
    unique_key: str | Callable[..., str | None] | None = None
    """A job of this task with the same key is not queued twice while one is in scope (``unique_while``).

    A string, or ``unique_key(*args, **kwargs)`` deriving it from the arguments (``None`` or ``""``:
    that call is not unique). A dispatch's ``unique_key=`` takes its place."""
    unique_while: str = "active"
    """The scope of ``unique_key``: ``"active"`` (queued or running) or ``"queued"`` (never started)."""

    def for_dispatch(
        self,
        dispatched_by: Any,
        idempotency_key: str,
        callback_url: str | None,
        unique: tuple[str, str] | None = None,
    ) -> BourbonTask:
        """A copy carrying what one dispatch records beyond Django's enqueue arguments.

        The extras travel on the task, as ``Task.using()``'s options do, to the backend
        that builds the job row; the task itself is unchanged. ``unique`` is a dispatch's
        ``(unique_key, unique_while)``.
        """
        if (dispatched_by, idempotency_key, callback_url, unique) == (None, "", self.callback_url, None):
            return self
        key, scope = unique or (self.unique_key, self.unique_while)
        return dataclasses.replace(
            self,
            dispatched_by=dispatched_by,
            idempotency_key=idempotency_key,
            callback_url=callback_url,
            unique_key=key,
            unique_while=scope,
        )

    def limit_spec(self) -> LimitSpec | None:
        """The task's own limits, or ``None``; ``LimitError`` if an option is malformed."""
        return task_spec(self.module_path, self.concurrency, self.rate_limit, self.circuit_breaker)

    def get_max_attempts(self) -> int:
        return self.max_attempts or get_settings().DEFAULT_MAX_ATTEMPTS

    def get_timeout(self) -> float | None:
        return self.timeout if self.timeout is not None else get_settings().DEFAULT_TIMEOUT

    def get_backoff(self) -> Backoff:
        return self.backoff or get_settings().default_backoff


def task_options(task: Task) -> BourbonTask | None:
    """The task as a :class:`BourbonTask`, or ``None`` for a plain Django Task."""
    return task if isinstance(task, BourbonTask) else None


def max_attempts_of(task: Task) -> int:
    options = task_options(task)
    return options.get_max_attempts() if options else get_settings().DEFAULT_MAX_ATTEMPTS


def timeout_of(task: Task) -> float | None:
    options = task_options(task)
    return options.get_timeout() if options else get_settings().DEFAULT_TIMEOUT


def backoff_of(task: Task) -> Any:
    options = task_options(task)
    return options.get_backoff() if options else get_settings().default_backoff


UNIQUE_SCOPES = ("active", "queued")


def unique_of(task: Task, args: Any, kwargs: Any) -> tuple[str, str] | None:
    """``(key, scope)`` when this call of ``task`` is a unique job, else ``None``."""
    options = task_options(task)
    if options is None or options.unique_key is None:
        return None
    key = options.unique_key(*args, **kwargs) if callable(options.unique_key) else options.unique_key
    if key in (None, ""):
        return None
    if not isinstance(key, str) or len(key) > 255:
        raise TypeError(f"{task.name}'s unique_key must be a string of at most 255 characters (got {key!r}).")
    return key, options.unique_while
