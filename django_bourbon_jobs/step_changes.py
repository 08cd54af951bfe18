"""Telling the world what a change to workflow steps did, once its transaction has committed.

The store (:mod:`django_bourbon_jobs.store.steps`) releases, cancels and counts
steps inside the transaction of the change that caused it (an outcome, a rescue, a
cancel); the worker and :mod:`~django_bourbon_jobs.operations` then call
:func:`announce` with what it returned: job and workflow events for live readers,
wake-ups for workers that hear enqueues from Redis, a log line and ``job_finished``
per cancelled step, and a log line and ``workflow_finished`` per workflow that ended.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from django_bourbon_jobs import log
from django_bourbon_jobs.events import publish
from django_bourbon_jobs.models import Job, Workflow
from django_bourbon_jobs.signals import job_finished, workflow_finished
from django_bourbon_jobs.store.steps import StepChanges, chunks


def announce(changes: StepChanges, using: str) -> None:
    """Everything :class:`StepChanges` says happened; call after its transaction committed."""
    if not changes:
        return
    for chunk in chunks([*changes.released, *changes.cancelled]):
        publish.publish_job_changes(chunk, using)
    publish.publish_enqueued(changes.queues)
    log_released(changes.released, using)
    log_held(changes.held, using)
    announce_cancelled(changes.cancelled, using, "cancelled (a step it waits for did not succeed)")
    announce_workflows(changes.workflows)


def log_released(job_ids: Sequence[Any], using: str) -> None:
    if job_ids and log.logger.isEnabledFor(logging.INFO):
        for job in jobs_by_id(job_ids, using):
            log.job_event(job, "released")


def log_held(job_ids: Sequence[Any], using: str) -> None:
    """Released steps left waiting: another job of their task holds their unique key."""
    if job_ids and log.logger.isEnabledFor(logging.INFO):
        for job in jobs_by_id(job_ids, using):
            log.job_event(job, "held", unique_key=job.unique_key)


def announce_cancelled(job_ids: Sequence[Any], using: str, event: str = "cancelled") -> None:
    """A log line and ``job_finished`` per cancelled step, as for any cancelled job."""
    for job in jobs_by_id(job_ids, using):
        log.job_event(job, event)
        job_finished.send(sender=Job, job=job)


def announce_workflows(workflows: Iterable[Workflow]) -> None:
    """Workflow events; for each that ended, its log line and ``workflow_finished``."""
    workflows = list(workflows)
    publish.publish_workflow_events(workflows)
    for workflow in workflows:
        if workflow.finished_at is not None and workflow.steps_finished >= workflow.step_count:
            log.workflow_event(workflow, str(workflow.status))
            workflow_finished.send(sender=Workflow, workflow=workflow)


def jobs_by_id(job_ids: Sequence[Any], using: str) -> list[Job]:
    jobs: list[Job] = []
    for chunk in chunks(job_ids):
        jobs += Job.objects.db_manager(using).filter(pk__in=chunk).defer("args", "kwargs", "return_value")
    return jobs
