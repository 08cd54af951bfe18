"""Every change to a job's state made outside a worker: cancel, request cancel, retry; closing a circuit.

The API, the admin and your code call these, so each change is made one way: it
writes, logs one line per job, announces the job to live readers once the
transaction commits, and sends its signal (``job_finished`` for a cancel,
``job_retried`` for a retry). Many jobs are changed in chunks of :data:`CHUNK`,
one ``UPDATE`` each, after their ids are read; a job that a worker claims
meanwhile is left alone, and not announced as if it had changed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import router
from django.db.models import QuerySet
from django.utils import timezone

from django_bourbon_jobs import circuits, log, store
from django_bourbon_jobs.events import publish
from django_bourbon_jobs.models import Job, JobQuerySet, JobStatus, Limit
from django_bourbon_jobs.signals import job_finished, job_retried

CHUNK = 500


def cancel(job_id: str) -> bool:
    """Cancel a queued job; false if it is unknown, already running or finished."""
    try:
        job_uuid = uuid.UUID(str(job_id))
    except ValueError:
        return False
    return cancel_queued(Job.objects.filter(pk=job_uuid)) == 1


def cancel_queued(jobs: QuerySet[Any]) -> int:
    """Cancel the queued jobs among ``jobs`` (running and finished ones are left alone); how many.

    Each is logged, announced and sent ``job_finished``, as a job that ends in a worker is.
    """
    return _in_chunks(
        jobs.queued(),  # type: ignore[attr-defined]
        change=lambda chunk, now: chunk.cancel(now),
        changed=lambda chunk, now: chunk.filter(status=JobStatus.CANCELLED, finished_at=now),
        after=_cancelled,
    )


def retry_jobs(jobs: QuerySet[Any]) -> int:
    """Queue the failed and cancelled jobs among ``jobs`` again (attempts reset, due now); how many.

    Their error history stays. Each is logged, announced and sent ``job_retried``.
    """
    return _in_chunks(
        jobs.filter(status__in=(JobStatus.FAILED, JobStatus.CANCELLED)),
        change=lambda chunk, now: chunk.retry(now),
        changed=lambda chunk, now: chunk.filter(status=JobStatus.QUEUED, run_after=now, attempts=0),
        after=_retried,
    )


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
    candidates: QuerySet[Any],
    change: Callable[[JobQuerySet, datetime], int],
    changed: Callable[[JobQuerySet, datetime], QuerySet[Any]],
    after: Callable[[Job], None],
) -> int:
    """Read the candidates' ids, then change them ``CHUNK`` at a time; ``after`` each changed job."""
    using = candidates.db
    ids = list(candidates.order_by().values_list("pk", flat=True))
    store = Job.objects.db_manager(using)
    total = 0
    for start in range(0, len(ids), CHUNK):
        chunk = store.filter(pk__in=ids[start : start + CHUNK])
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
