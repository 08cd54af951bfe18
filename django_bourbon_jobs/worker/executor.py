"""Run one claimed job: call it, and leave its outcome on the in-memory Job.

The worker process writes outcomes in batches (see ``process.py``); the
executor touches no database itself, so it can run in any thread.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from django.tasks import Task, TaskResult
from django.tasks.signals import task_started

from django_bourbon_jobs import log
from django_bourbon_jobs.context import JobContext, ProgressReporter
from django_bourbon_jobs.exceptions import JobCancelled, JobTimeout, UnknownTask
from django_bourbon_jobs.models import Job
from django_bourbon_jobs.results import load_task, to_task_result
from django_bourbon_jobs.retry import REFUNDS_PER_JOB, next_attempt_at, refund_delay
from django_bourbon_jobs.serialization import error_record, storable_return_value
from django_bourbon_jobs.tasks import timeout_of
from django_bourbon_jobs.worker import db_connections


class TimeoutInterrupt(BaseException):
    """Injected into a thread whose job overran.

    A BaseException, so a job's own ``except Exception`` cannot swallow it.
    """


@dataclass
class Watched:
    job: Job
    thread_id: int
    deadline: float
    timeout: float
    interrupted: bool = False
    done: bool = False
    cancelling: bool = False


@dataclass
class TimeoutWatch:
    """Deadlines of running jobs; :meth:`enforce` interrupts those past theirs."""

    grace: float
    clock: Callable[[], float] = time.monotonic
    on_watch: Callable[[float], None] = lambda deadline: None
    """Called with a new or moved deadline, so a sleeping loop can wake in time for it."""
    _entries: dict[int, Watched] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def stop_soon(self, job_pk: Any) -> None:
        """A cancel was requested: interrupt the job after ``grace`` unless it stops by itself."""
        with self._lock:
            for entry in self._entries.values():
                if entry.job.pk == job_pk:
                    entry.deadline = min(entry.deadline, self.clock() + self.grace)
                    entry.cancelling = True
        self.on_watch(self.clock() + self.grace)

    @contextmanager
    def watching(self, job: Job, timeout: float | None) -> Iterator[None]:
        deadline = self.clock() + timeout if timeout is not None else float("inf")
        entry = Watched(job, threading.get_ident(), deadline, timeout or 0.0)
        with self._lock:
            self._entries[entry.thread_id] = entry
        self.on_watch(deadline)
        try:
            yield
        finally:
            with self._lock:
                entry.done = True
                self._entries.pop(entry.thread_id, None)
                if entry.interrupted:
                    _set_async_exc(entry.thread_id, None)

    def next_deadline(self) -> float | None:
        with self._lock:
            deadline = min((e.deadline for e in self._entries.values()), default=float("inf"))
        return None if deadline == float("inf") else deadline

    def enforce(self) -> list[Watched]:
        """Interrupt overrunning jobs; return those still running ``grace`` seconds later."""
        now = self.clock()
        stuck = []
        with self._lock:
            for entry in self._entries.values():
                if entry.done or now < entry.deadline:
                    continue
                if not entry.interrupted:
                    entry.interrupted = True
                    _set_async_exc(entry.thread_id, TimeoutInterrupt)
                elif now >= entry.deadline + self.grace:
                    stuck.append(entry)
        return stuck


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None
    )


@dataclass
class Executor:
    worker_id: str
    watch: TimeoutWatch
    now: Callable[[], datetime]
    on_start: Callable[[Job], None] = lambda job: None
    """Called on the job's thread just before its code runs (the process's start log)."""
    backend_alias: str = "default"
    cancel_flags: dict[Any, threading.Event] = field(default_factory=dict)
    started: dict[Any, TaskResult] = field(default_factory=dict)
    """The ``TaskResult`` each attempt's ``task_started`` carried, until its outcome is announced."""
    raised: dict[Any, BaseException] = field(default_factory=dict)
    """The exception each failed attempt ended with, until its outcome is announced (see ``announce``)."""

    def run(self, job: Job) -> Job:
        """Run ``job`` once and record its outcome on it (not yet saved)."""
        try:
            task = load_task(job.task_path)
        except UnknownTask as exc:
            self.record_failure(job, None, exc)
            return job
        result = self.started[job.pk] = to_task_result(job, task.backend, task)
        task_started.send(sender=type(task.get_backend()), task_result=result)
        log.job_event(job, "running", worker_id=self.worker_id)
        timeout = timeout_of(task)
        cancel_flag = self.cancel_flags.setdefault(job.pk, threading.Event())
        try:
            with self.watch.watching(job, timeout):
                self.on_start(job)
                value = self._call(task, result, job, cancel_flag)
        except (TimeoutInterrupt, JobCancelled) as exc:
            if cancel_flag.is_set():
                job.mark_cancelled(self.now())
            elif isinstance(exc, JobCancelled):
                self.record_failure(job, task, exc, result=result)
            else:
                self.record_failure(
                    job, task, JobTimeout(f"Exceeded its timeout of {timeout:g}s."), exc, result
                )
        except BaseException as exc:  # noqa: BLE001  (a job must never take its worker down)
            if db_connections.lost_connection(exc):
                self.record_interruption(job, exc)
            else:
                self.record_failure(job, task, exc, result=result)
        else:
            self._record_return(job, task, value, result)
        finally:
            self.cancel_flags.pop(job.pk, None)
        return job

    def _record_return(self, job: Job, task: Task, value: Any, result: TaskResult) -> None:
        """Succeed with ``value``, or fail at once if it cannot be stored.

        Not retried: the attempt's side effects already happened, and another
        attempt would most likely return the same value. The error is what
        Django's backends record for it (a ``TypeError`` for an unsupported type),
        or whatever the value's own code raised while it was read.
        """
        try:
            stored = storable_return_value(value, job.task_path)
        except Exception as exc:  # noqa: BLE001  (a value that cannot be stored fails the job, not the worker)
            self.record_failure(job, task, exc, result=result, final=True)
        else:
            job.mark_succeeded(stored, self.now())

    def _call(self, task: Task, result: TaskResult, job: Job, cancel_flag: threading.Event) -> Any:
        if task.takes_context:
            context = JobContext(
                task_result=result, progress=ProgressReporter(job, self.worker_id), cancel_flag=cancel_flag
            )
            return task.call(context, *result.args, **result.kwargs)
        return task.call(*result.args, **result.kwargs)

    def record_failure(
        self,
        job: Job,
        task: Task | None,
        exc: BaseException,
        cause: BaseException | None = None,
        result: TaskResult | None = None,
        final: bool = False,
    ) -> None:
        """Schedule the next attempt, or fail for good, per the task's retry policy (``final``: fail)."""
        now = self.now()
        if cause is not None:
            exc.__cause__ = cause
            exc.__traceback__ = cause.__traceback__
        error = error_record(exc, worker_id=self.worker_id, attempt=job.attempts, at=now)
        self.raised[job.pk] = exc
        retry_at = None
        if not final:
            retry_at = next_attempt_at(
                task,
                exc,
                result or _bare_result(job, task, self.backend_alias),
                job.attempts,
                job.max_attempts,
                now,
            )
        if retry_at is None:
            job.mark_failed(error, now)
        else:
            job.schedule_retry(retry_at, error)

    def record_interruption(self, job: Job, exc: BaseException) -> None:
        """The database connection broke under the attempt: retry it soon, uncharged.

        The error is kept, marked ``"charged": false``, so an operator sees the
        outage. Only :data:`REFUNDS_PER_JOB` attempts are refunded: a job whose
        own code keeps breaking its connection is then charged like any failure.
        """
        if job.refunded_attempts >= REFUNDS_PER_JOB:
            self.record_failure(job, None, exc)
            return
        now = self.now()
        error = error_record(exc, worker_id=self.worker_id, attempt=job.attempts, at=now)
        job.attempts -= 1
        delay = timedelta(seconds=refund_delay(job.refunded_attempts))
        job.schedule_retry(now + delay, {**error, "charged": False})


def _bare_result(job: Job, task: Task | None, alias: str) -> Any:
    """A stand-in for backoff functions when the task itself cannot be loaded."""
    if task is not None:
        return to_task_result(job, alias, task)
    return SimpleNamespace(attempts=job.attempts, id=str(job.id))
