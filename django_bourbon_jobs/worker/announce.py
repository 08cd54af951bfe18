"""Tell the world a job's attempt ended: a log line, and Django's ``task_finished`` when final."""

from __future__ import annotations

from django.tasks.signals import task_finished

from django_bourbon_jobs import log
from django_bourbon_jobs.exceptions import UnknownTask
from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.results import load_task, to_task_result
from django_bourbon_jobs.signals import job_finished


def announce_outcome(job: Job, event: str | None = None) -> None:
    """Called after the outcome is stored, so receivers read what the database holds."""
    if job.status == JobStatus.QUEUED:
        log.job_event(job, event or "retrying", run_after=job.run_after.isoformat())
        return
    log.job_event(job, event or job.status)
    job_finished.send(sender=type(job), job=job)
    if job.status == JobStatus.CANCELLED:
        return
    try:
        task = load_task(job.task_path)
    except UnknownTask:
        return
    task_finished.send(sender=type(task.get_backend()), task_result=to_task_result(job, task.backend, task))
