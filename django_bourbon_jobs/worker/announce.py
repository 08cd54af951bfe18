"""Tell the world a job's attempt ended: a log line, and Django's ``task_finished`` when final."""

from __future__ import annotations

from django.tasks import TaskResult
from django.tasks.signals import task_finished

from django_bourbon_jobs import log
from django_bourbon_jobs.exceptions import UnknownTask
from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.results import load_task, refresh_task_result, to_task_result
from django_bourbon_jobs.signals import job_finished


def announce_outcome(job: Job, event: str | None = None, started: TaskResult | None = None) -> None:
    """Called after the outcome is stored, so receivers read what the database holds.

    ``started`` is the ``TaskResult`` the attempt's ``task_started`` carried, if any;
    ``task_finished`` then carries the same object, brought up to date.
    """
    if job.status == JobStatus.QUEUED:
        log.job_event(job, event or "retrying", due_at=job.due_at.isoformat())
        return
    log.job_event(job, event or job.status)
    job_finished.send(sender=type(job), job=job)
    if job.status == JobStatus.CANCELLED:
        return
    if started is not None:
        result = refresh_task_result(started, job)
    else:
        try:
            task = load_task(job.task_path)
        except UnknownTask:
            return
        result = to_task_result(job, task.backend, task)
    task_finished.send(sender=type(result.task.get_backend()), task_result=result)
