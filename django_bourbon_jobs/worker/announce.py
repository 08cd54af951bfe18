"""Tell the world a job's attempt ended: a log line, and Django's ``task_finished`` when final."""

from __future__ import annotations

from collections.abc import Callable

from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, TaskResult
from django.tasks.signals import task_finished

from django_bourbon_jobs import log
from django_bourbon_jobs.exceptions import UnknownTask
from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.results import load_task, refresh_task_result, to_task_result
from django_bourbon_jobs.signals import job_finished


def announce_outcome(
    job: Job,
    event: str | None = None,
    started: TaskResult | None = None,
    exception: BaseException | None = None,
) -> None:
    """Called after the outcome is stored, so receivers read what the database holds.

    ``started`` is the ``TaskResult`` the attempt's ``task_started`` carried, if any;
    ``task_finished`` then carries the same object, brought up to date. ``exception``
    is what the attempt raised: a failed job's ``task_finished`` is sent while it is
    being handled, as Django's own backends send it, so receivers that read
    ``sys.exc_info()`` (Django's ``django.tasks`` log, error trackers) see it.
    """
    if job.status == JobStatus.QUEUED:
        log.job_event(job, event or "retrying", due_at=job.due_at.isoformat())
        return
    log.job_event(job, event or job.status)
    job_finished.send(sender=type(job), job=job)
    if job.status == JobStatus.CANCELLED:
        return
    result = refresh_task_result(started, job) if started is not None else _result_of(job)

    def send() -> None:
        task_finished.send(sender=type(result.task.get_backend()), task_result=result)

    if exception is not None and job.status == JobStatus.FAILED:
        while_handling(exception, send)
    else:
        send()


def _result_of(job: Job) -> TaskResult:
    """The job's result read through its task's own backend (the default one for a task that is gone)."""
    try:
        alias = load_task(job.task_path).backend
    except UnknownTask:
        alias = DEFAULT_TASK_BACKEND_ALIAS
    return to_task_result(job, alias)


def while_handling(exception: BaseException, call: Callable[[], None]) -> None:
    """Run ``call`` inside an ``except`` block handling ``exception``; its traceback is left as it was."""
    original = exception.__traceback__
    try:
        raise exception
    except BaseException:  # noqa: BLE001  (it is ``exception`` itself, raised just above)
        call()
    finally:
        exception.__traceback__ = original
