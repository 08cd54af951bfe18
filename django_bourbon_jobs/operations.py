"""Every change to a job's state made outside a worker: cancel, request cancel, retry; and to a
workflow's; closing a circuit.

The API, the admin and your code call these, so each change is made one way: it
writes, logs one line per job, announces the job to live readers once the
transaction commits, and sends its signal (``job_finished`` for a cancel,
``job_retried`` for a retry). Many jobs are changed in chunks of :data:`CHUNK`,
one ``UPDATE`` each, after their ids are read; a job that a worker claims
meanwhile is left alone, and not announced as if it had changed.

Workflow steps are jobs, but a change to one reaches further, so they go through
the store's workflow side (:mod:`django_bourbon_jobs.store.steps`): cancelling a
step cancels the steps that wait for it, and retrying a step retries its workflow
from its failed steps, the steps that wait for them waiting again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import IntegrityError, router, transaction
from django.db.models import QuerySet
from django.utils import timezone

from django_bourbon_jobs import circuits, log, step_changes, store
from django_bourbon_jobs.events import publish
from django_bourbon_jobs.models import Job, JobQuerySet, JobStatus, Limit, Workflow
from django_bourbon_jobs.signals import job_finished, job_retried
from django_bourbon_jobs.store import steps

CHUNK = 500


def cancel(job_id: str) -> bool:
    """Cancel a queued job; false if it is unknown, already running or finished."""
    try:
        job_uuid = uuid.UUID(str(job_id))
    except ValueError:
        return False
    return cancel_queued(Job.objects.filter(pk=job_uuid)) == 1


def cancel_queued(jobs: QuerySet[Any]) -> int:
    """Cancel the jobs among ``jobs`` not started yet (running and finished ones are left alone); how many.

    Each is logged, announced and sent ``job_finished``, as a job that ends in a worker is.
    A workflow step that is cancelled cancels the steps that wait for it (but those
    that say ``on_failure="continue"``, which may run now).
    """
    candidates = jobs.pending()  # type: ignore[attr-defined]
    plain, in_workflows = _partition(candidates)
    cancelled = _in_chunks(
        candidates.db,
        plain,
        change=lambda chunk, now: chunk.cancel(now),
        changed=lambda chunk, now: chunk.filter(status=JobStatus.CANCELLED, finished_at=now),
        after=_cancelled,
    )
    if in_workflows:
        cancelled += _cancel_steps(candidates.db, in_workflows)
    return cancelled


def retry_jobs(jobs: QuerySet[Any]) -> int:
    """Queue the failed and cancelled jobs among ``jobs`` again (attempts reset, due now); how many.

    Their error history stays. Each is logged, announced and sent ``job_retried``. A unique
    job whose key another job of its task now holds (``unique_while="active"``) stays as it is.
    A workflow step's workflow is retried from its failed steps (:func:`retry_workflow`).
    """
    candidates = jobs.filter(status__in=(JobStatus.FAILED, JobStatus.CANCELLED))
    plain, in_workflows = _partition(candidates)
    retried = _in_chunks(
        candidates.db,
        plain,
        change=_retry_chunk,
        changed=lambda chunk, now: chunk.filter(status=JobStatus.QUEUED, due_at=now, attempts=0),
        after=_retried,
    )
    if in_workflows:
        workflows = Job.objects.db_manager(candidates.db).filter(pk__in=in_workflows)
        again: set[Any] = set()
        for workflow_id in set(workflows.values_list("workflow_id", flat=True)):
            again |= _retry_workflow(candidates.db, workflow_id)
        retried += len(again & set(in_workflows))
    return retried


def cancel_workflow(workflow_id: Any) -> bool:
    """Cancel a running workflow: its steps not started yet are cancelled, its running ones asked to stop.

    The workflow is ``cancelled`` at once, and finished once its running steps stop.
    False for an unknown id or a workflow that is not running.
    """
    using = router.db_for_write(Workflow)
    pk = _uuid(workflow_id)
    done = steps.cancel_workflow(using, pk, timezone.now()) if pk else None
    if done is None:
        return False
    for chunk in steps.chunks(done.cancelled):
        publish.publish_job_changes(chunk, using)
    step_changes.announce_cancelled(done.cancelled, using)
    for job_id in done.running:
        request_cancel(job_id)
    log.workflow_event(done.workflow, "cancelled")
    step_changes.announce_workflows([done.workflow])
    return True


def retry_workflow(workflow_id: Any) -> int:
    """Run a workflow again from its failed and cancelled steps; how many steps will run again.

    Those whose dependencies all succeeded are queued at once; the others wait again.
    """
    pk = _uuid(workflow_id)
    return len(_retry_workflow(router.db_for_write(Workflow), pk)) if pk else 0


def _retry_workflow(using: str, workflow_id: Any) -> set[Any]:
    """Retry one workflow, and announce it; the steps that will run again."""
    storage = store.for_connection(using)
    done = steps.retry_workflow(using, workflow_id, timezone.now(), storage.notify)
    if done is None:
        return set()
    again = [*done.queued, *done.waiting]
    for chunk in steps.chunks(again):
        publish.publish_job_changes(chunk, using)
    publish.publish_enqueued(done.queues)
    for job in step_changes.jobs_by_id(again, using):
        _retried(job)
    log.workflow_event(done.workflow, "retried")
    step_changes.announce_workflows([done.workflow])
    return set(again)


def _cancel_steps(using: str, job_ids: list[Any]) -> int:
    """Cancel pending workflow steps and the steps that wait for them; how many of ``job_ids``."""
    changes = steps.cancel_steps(using, job_ids, timezone.now(), store.for_connection(using).notify)
    step_changes.announce(changes, using)
    return len(set(changes.cancelled) & set(job_ids))


def _partition(candidates: QuerySet[Any]) -> tuple[list[Any], list[Any]]:
    """The candidates' ids: those of plain jobs, and those of workflow steps."""
    plain: list[Any] = []
    in_workflows: list[Any] = []
    for pk, workflow_id in candidates.order_by().values_list("pk", "workflow_id"):
        (plain if workflow_id is None else in_workflows).append(pk)
    return plain, in_workflows


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _retry_chunk(chunk: JobQuerySet, now: datetime) -> int:
    """One UPDATE for the jobs without a unique key; one savepoint each for the others."""
    changed = chunk.filter(unique_while="").retry(now)
    for pk in chunk.exclude(unique_while="").values_list("pk", flat=True):
        try:
            with transaction.atomic(using=chunk.db):
                changed += chunk.filter(pk=pk).retry(now)
        except IntegrityError:  # bourbon_job_unique_active: another job holds its key
            log.logger.info(
                "Job %s not retried: another job holds its unique_key", pk, extra={"job_id": str(pk)}
            )
    return changed


def request_cancel(job_id: str) -> str | None:
    """Cancel a queued job (``"cancelled"``), or ask a running one to stop (``"requested"``).

    ``None`` for an unknown id or a job that already finished. A running job sees
    ``context.cancel_requested``; if it has not stopped ``TIMEOUT_GRACE`` seconds
    later, its worker interrupts it. Either way it ends ``cancelled``.
    """
    if cancel(job_id):
        return "cancelled"
    try:
        running = Job.objects.running().filter(pk=uuid.UUID(str(job_id)))
    except ValueError:
        return None
    if running.filter(cancel_requested_at__isnull=True).update(cancel_requested_at=timezone.now()):
        log.logger.info("Cancel requested for job %s", job_id, extra={"job_id": str(job_id)})
        publish.publish_job_changes([job_id], router.db_for_write(Job))
    return "requested" if running.exists() else None


def close_circuit(key: str, reason: str = "closed by hand") -> bool:
    """Close a task's open circuit breaker: its jobs may start again at once; false if it was not open.

    Logged and sent as ``circuit_closed``, as a circuit that closes in a worker is;
    the workers of the queues its jobs wait in are woken (PostgreSQL; elsewhere they poll).
    """
    using = router.db_for_write(Limit)
    storage = store.for_connection(using)
    change = storage.close_circuit(using, key, reason)
    if change is None:
        return False
    waiting = Job.objects.db_manager(using).queued().filter(limit_key=key)
    for queue_name in waiting.order_by().values_list("queue_name", flat=True).distinct():
        storage.notify(using, queue_name)
    circuits.announce(change)
    return True


def _in_chunks(
    using: str,
    ids: list[Any],
    change: Callable[[JobQuerySet, datetime], int],
    changed: Callable[[JobQuerySet, datetime], QuerySet[Any]],
    after: Callable[[Job], None],
) -> int:
    """Change the jobs ``CHUNK`` at a time; ``after`` each changed job."""
    jobs = Job.objects.db_manager(using)
    total = 0
    for start in range(0, len(ids), CHUNK):
        chunk = jobs.filter(pk__in=ids[start : start + CHUNK])
        now = timezone.now()
        if not change(chunk, now):
            continue
        done = list(changed(chunk, now))
        total += len(done)
        publish.publish_job_changes([job.pk for job in done], using)
        for job in done:
            after(job)
    return total


def _cancelled(job: Job) -> None:
    log.job_event(job, "cancelled")
    job_finished.send(sender=Job, job=job)


def _retried(job: Job) -> None:
    log.job_event(job, "retried")
    job_retried.send(sender=Job, job=job)
