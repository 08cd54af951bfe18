"""Jobs as Django ``TaskResult`` snapshots, and task paths back to Task objects."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.base import TaskError
from django.utils.module_loading import import_string

from django_bourbon_jobs.exceptions import UnknownTask
from django_bourbon_jobs.models import Job, JobStatus

STATUS_TO_DJANGO = {
    JobStatus.QUEUED: TaskResultStatus.READY,
    # A workflow step waiting for its dependencies will run; it is not running yet.
    JobStatus.WAITING: TaskResultStatus.READY,
    JobStatus.RUNNING: TaskResultStatus.RUNNING,
    JobStatus.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    JobStatus.FAILED: TaskResultStatus.FAILED,
    # Django has no cancelled state; a cancelled job did not succeed and will not run.
    JobStatus.CANCELLED: TaskResultStatus.FAILED,
}


@functools.lru_cache(maxsize=1024)
def load_task(path: str) -> Task:
    """The Task a job's ``task_path`` names; :class:`UnknownTask` if there is none."""
    try:
        task = import_string(path)
    except ImportError as exc:
        raise UnknownTask(f"No task can be imported from {path!r}: {exc}") from exc
    if not isinstance(task, Task):
        raise UnknownTask(f"{path!r} is not a Task; decorate it with @task.")
    return task


@functools.lru_cache(maxsize=256)
def stand_in(path: str, reason: str) -> Callable[..., Any]:
    """A function in place of a job's task that no longer imports (renamed or removed since).

    It bears the task's path, so ``result.task.module_path`` and ``result.task.name``
    still say which task the job ran; calling it raises :class:`UnknownTask` with
    ``reason``. One per path, so the results of one job compare equal.
    """

    def unavailable(*args: object, **kwargs: object) -> None:
        raise UnknownTask(reason)

    module, _, name = path.rpartition(".")
    unavailable.__module__, unavailable.__name__, unavailable.__qualname__ = module, name, name
    return unavailable


def task_for_job(job: Job, backend_alias: str) -> Task:
    """The job's Task as it was dispatched: the options ``using()`` and a dispatch gave it.

    For a task that no longer imports, a task around a :func:`stand_in` function: the job
    is still there and readable (status, arguments, errors, return value), and its
    task's ``module_path`` is still the job's task path.
    """
    try:
        task = load_task(job.task_path)
    except UnknownTask as exc:
        from django_bourbon_jobs.tasks import BourbonTask

        task = BourbonTask(
            func=stand_in(job.task_path, str(exc)), backend=backend_alias, queue_name=job.queue_name
        )
    task = task.using(
        priority=job.priority,
        queue_name=job.queue_name,
        run_after=job.run_after,
        backend=backend_alias if backend_alias != task.backend else None,
    )
    return _with_dispatch_extras(task, job)


def _with_dispatch_extras(task: Task, job: Job) -> Task:
    """What the dispatch recorded beyond Django's options, as ``dispatch_async`` put it on the task."""
    from django_bourbon_jobs.tasks import BourbonTask

    if not isinstance(task, BourbonTask):
        return task
    return task.for_dispatch(None, job.idempotency_key, job.callback_url or None)


def to_task_result(job: Job, backend_alias: str, task: Task | None = None) -> TaskResult:
    result: TaskResult = TaskResult(
        task=task or task_for_job(job, backend_alias),
        id=str(job.id),
        status=STATUS_TO_DJANGO[JobStatus(job.status)],
        enqueued_at=job.enqueued_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        last_attempted_at=job.last_attempted_at,
        args=job.args,
        kwargs=job.kwargs,
        backend=backend_alias,
        errors=_task_errors(job),
        worker_ids=job.worker_ids,
    )
    object.__setattr__(result, "_return_value", job.return_value)
    return result


def queued_task_results(jobs: Sequence[Job], backend_alias: str, task: Task) -> list[TaskResult]:
    """``TaskResult``s for jobs that :func:`bulk.clone_jobs` made from one template.

    The jobs differ only in id and arguments, so the first result is built the
    ordinary way and the others copy its fields, with their own id, arguments and
    fresh (empty) error and worker lists. Every field of the first is copied, so a
    field a later Django adds is carried too. Arguments are already in their
    read-back JSON form (``ensure_json``), which is all ``__post_init__`` would do.
    """
    if not jobs:
        return []
    first = to_task_result(jobs[0], backend_alias, task)
    names = [f.name for f in dataclasses.fields(TaskResult) if f.name not in _PER_JOB]
    shared = [(name, getattr(first, name)) for name in names]
    results = [first]
    for job in jobs[1:]:
        result = TaskResult.__new__(TaskResult)
        for name, value in shared:
            object.__setattr__(result, name, value)
        object.__setattr__(result, "id", str(job.id))
        object.__setattr__(result, "args", job.args)
        object.__setattr__(result, "kwargs", job.kwargs)
        object.__setattr__(result, "errors", [])
        object.__setattr__(result, "worker_ids", [])
        results.append(result)
    return results


_PER_JOB = frozenset({"id", "args", "kwargs", "errors", "worker_ids"})


def refresh_task_result(result: TaskResult, job: Job) -> TaskResult:
    """Bring the snapshot taken when the attempt started up to the attempt's outcome.

    In place, as Django's own backends update theirs: the worker builds one
    ``TaskResult`` per attempt for both ``task_started`` and ``task_finished``.
    """
    object.__setattr__(result, "status", STATUS_TO_DJANGO[JobStatus(job.status)])
    object.__setattr__(result, "finished_at", job.finished_at)
    object.__setattr__(result, "errors", _task_errors(job))
    object.__setattr__(result, "_return_value", job.return_value)
    return result


def _task_errors(job: Job) -> list[TaskError]:
    return [
        TaskError(exception_class_path=e["exception_class_path"], traceback=e["traceback"])
        for e in job.errors
    ]
