"""The ``django.tasks`` backend that stores every job in the database."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.db import IntegrityError, router, transaction
from django.tasks import Task, TaskResult
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone

from django_bourbon_jobs import bulk, log, store
from django_bourbon_jobs.conf import queue_limit_specs
from django_bourbon_jobs.events import publish
from django_bourbon_jobs.exceptions import InvalidPayload
from django_bourbon_jobs.limits import LimitError, LimitSpec, limit_key_for
from django_bourbon_jobs.serialization import ensure_json
from django_bourbon_jobs.tasks import UNIQUE_SCOPES, BourbonTask, max_attempts_of, task_options, unique_of

UNIQUE_TRIES = 5
"""Reads and INSERTs a unique enqueue makes at most before it gives up (each lost race means a holder)."""


def _limit_specs_of(task: Task) -> tuple[LimitSpec | None, LimitSpec | None]:
    """The task's own limits and its queue's (``QUEUE_LIMITS``), each ``None`` if it has none."""
    options = task_options(task)
    return options.limit_spec() if options else None, queue_limit_specs().get(task.queue_name)


def limit_specs(task: Task) -> list[LimitSpec]:
    """Every limit that holds the task's jobs: its own, its queue's."""
    return [spec for spec in _limit_specs_of(task) if spec is not None]


def _saved_user(user: Any) -> Any:
    """The user to record, or ``None`` for no user, an anonymous one, or one never saved."""
    if user is None or not getattr(user, "is_authenticated", False) or getattr(user, "pk", None) is None:
        return None
    return user


class DatabaseBackend(BaseTaskBackend):
    task_class = BourbonTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        # Unlike Django's default of ["default"], any queue name is accepted
        # unless the project lists its queues.
        self.queues = set(params.get("QUEUES", []))
        self.redis_alias: str | None = self.options.get("REDIS")

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        options = task_options(task)
        if options is None:
            return
        if options.max_attempts is not None and not (
            isinstance(options.max_attempts, int) and options.max_attempts >= 1
        ):
            raise InvalidTask("max_attempts must be a whole number of at least 1.")
        if options.timeout is not None and not (
            isinstance(options.timeout, int | float) and options.timeout > 0
        ):
            raise InvalidTask("timeout must be a number of seconds greater than 0.")
        if options.backoff is not None and not callable(options.backoff):
            raise InvalidTask("backoff must be a callable (exception, task_result) -> seconds or None.")
        if options.unique_key is not None and not (
            isinstance(options.unique_key, str) or callable(options.unique_key)
        ):
            raise InvalidTask("unique_key must be a string or a callable (*args, **kwargs) -> str.")
        if options.unique_while not in UNIQUE_SCOPES:
            raise InvalidTask(f"unique_while must be one of {', '.join(map(repr, UNIQUE_SCOPES))}.")
        try:
            options.limit_spec()
        except LimitError as exc:
            raise InvalidTask(str(exc)) from exc

    def enqueue(self, task: Task, args: Sequence[Any], kwargs: dict[str, Any]) -> TaskResult:
        from django_bourbon_jobs.models import Job
        from django_bourbon_jobs.results import to_task_result

        self.validate_task(task)
        job = self._build_job(task, args, kwargs)
        using = router.db_for_write(Job)
        unique = unique_of(task, args, kwargs)
        if unique is None:
            self._insert(job, using, task)
        else:
            job.unique_key, job.unique_while = unique
            holder = self._insert_unique(job, using, task)
            if holder is not None:
                return to_task_result(holder, self.alias)
        result = to_task_result(job, self.alias, task)
        task_enqueued.send(type(self), task_result=result)
        log.job_event(job, "queued")
        return result

    def _insert(self, job: Any, using: str, task: Task) -> None:
        due_now = job.due_at <= job.enqueued_at
        if job.limit_key:
            self.ensure_limits(task, using)
        store.for_connection(using).insert(job, using, notify=due_now)
        if due_now and self.redis_alias:
            publish.publish_after_commit(self.redis_alias, job.queue_name, using)

    def _insert_unique(self, job: Any, using: str, task: Task) -> Any:
        """Insert a unique job, or return the job that holds its key (then nothing is written).

        The partial unique constraints decide: a dispatch racing another for the same key
        fails its INSERT (on PostgreSQL, once the other commits) and returns the other's job.
        The loop covers a holder that finished between the failed INSERT and the read.
        """
        from django_bourbon_jobs.models import Job

        jobs = Job.objects.db_manager(using)
        for _ in range(UNIQUE_TRIES):
            holder = jobs.holding(job.task_path, job.unique_key, job.unique_while).first()
            if holder is not None:
                return holder
            try:
                with transaction.atomic(using=using):
                    self._insert(job, using, task)
                return None
            except IntegrityError:
                continue
        raise IntegrityError(
            f"unique_key {job.unique_key!r} of {job.task_path} kept changing hands; try again."
        )

    def enqueue_many(
        self, task: Task, calls: Sequence[tuple[Sequence[Any], dict[str, Any]]]
    ) -> list[TaskResult]:
        """Enqueue many calls of one task in one transaction (COPY on PostgreSQL), all or nothing.

        Every payload is checked before anything is written; the rows go in one
        transaction, and each queue is notified once.
        """
        from django_bourbon_jobs.models import Job
        from django_bourbon_jobs.results import queued_task_results

        self.validate_task(task)
        if getattr(task, "unique_key", None) is not None:
            raise TypeError(f"{task.name} makes unique jobs: enqueue them one at a time (dispatch_async).")
        template = self._build_job(task, (), {})
        with bulk.collector_paused():
            checked = (self._checked_arguments(task, args, kwargs) for args, kwargs in calls)
            jobs = bulk.clone_jobs(template, checked)
            using = router.db_for_write(Job)
            storage = store.for_connection(using)
            with transaction.atomic(using=using):
                if template.limit_key:
                    storage.ensure_limits(using, limit_specs(task))
                storage.insert_many(jobs, using)
                if jobs and jobs[0].due_at <= jobs[0].enqueued_at:
                    storage.notify(using, task.queue_name)
                    if self.redis_alias:
                        publish.publish_after_commit(self.redis_alias, task.queue_name, using)
            results = queued_task_results(jobs, self.alias, task)
        for job, result in zip(jobs, results, strict=True):
            task_enqueued.send(type(self), task_result=result)
            log.job_event(job, "queued")
        return results

    def ensure_limits(self, task: Task, using: str) -> None:
        """Create or update the ``Limit`` rows that hold ``task``'s jobs; before writing a limited job.

        A limited job whose row is missing would never be claimed: the plain claim skips it.
        """
        specs = limit_specs(task)
        if specs:
            store.for_connection(using).ensure_limits(using, specs)

    def build_job(self, task: Task, args: Sequence[Any], kwargs: dict[str, Any], now: datetime) -> Any:
        """The unsaved ``Job`` row ``enqueue`` would write (a workflow writes its steps itself).

        Raises ``InvalidTask`` or ``InvalidPayload`` as ``enqueue`` would.
        """
        self.validate_task(task)
        return self._build_job(task, args, kwargs, now)

    def _check_redis(self) -> list[checks.CheckMessage]:
        if self.redis_alias is None:
            return []
        cache = settings.CACHES.get(self.redis_alias, {}) if isinstance(self.redis_alias, str) else {}
        if not str(cache.get("BACKEND", "")).startswith("django_redis."):
            return [
                checks.Error(
                    f"TASKS[{self.alias!r}]['OPTIONS']['REDIS'] is {self.redis_alias!r}, "
                    "which is not a django-redis cache in CACHES.",
                    hint="Name a CACHES alias whose BACKEND is django_redis.cache.RedisCache.",
                    id="bourbon_jobs.E007",
                )
            ]
        return []

    def _build_job(
        self, task: Task, args: Sequence[Any], kwargs: dict[str, Any], now: datetime | None = None
    ) -> Any:
        from django_bourbon_jobs.models import Job

        now = now or timezone.now()
        args, kwargs = self._checked_arguments(task, args, kwargs)
        return Job(
            task_path=task.module_path,
            queue_name=task.queue_name,
            priority=task.priority,
            args=args,
            kwargs=kwargs,
            max_attempts=max_attempts_of(task),
            run_after=task.run_after,
            due_at=task.run_after or now,
            enqueued_at=now,
            dispatched_by=_saved_user(getattr(task, "dispatched_by", None)),
            idempotency_key=getattr(task, "idempotency_key", ""),
            callback_url=getattr(task, "callback_url", None) or "",
            limit_key=limit_key_for(*_limit_specs_of(task)),
        )

    @staticmethod
    def _checked_arguments(
        task: Task, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """The arguments as they will read back from the database; ``InvalidPayload`` if not JSON."""
        return (
            ensure_json(list(args), InvalidPayload, f"The arguments of {task.module_path}"),
            ensure_json(dict(kwargs), InvalidPayload, f"The keyword arguments of {task.module_path}"),
        )

    def get_result(self, result_id: str) -> TaskResult:
        from django_bourbon_jobs.models import Job
        from django_bourbon_jobs.results import to_task_result

        try:
            job = Job.objects.get(pk=uuid.UUID(str(result_id)))
        except (ValueError, Job.DoesNotExist) as exc:
            raise TaskResultDoesNotExist(f"No job with id {result_id!r}.") from exc
        return to_task_result(job, self.alias)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        messages: list[checks.CheckMessage] = []
        if not apps.is_installed("django_bourbon_jobs"):
            messages.append(
                checks.Error(
                    f"TASKS[{self.alias!r}] uses DatabaseBackend, "
                    "but django_bourbon_jobs is not in INSTALLED_APPS.",
                    hint="Add 'django_bourbon_jobs' to INSTALLED_APPS and run migrate.",
                    id="bourbon_jobs.E005",
                )
            )
        messages.extend(self._check_redis())
        unknown = set(self.options) - {"REDIS"}
        if unknown:
            messages.append(
                checks.Error(
                    f"TASKS[{self.alias!r}]['OPTIONS'] has unknown keys: {', '.join(sorted(unknown))}.",
                    id="bourbon_jobs.E006",
                )
            )
        return messages
