"""Background duties of the supervisor: rescue lost attempts, forget dead workers.

Each duty is one function that does one pass (``run_once``-style); the
supervisor's loop only decides when to call them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Subquery

from django_bourbon_jobs import fastpath
from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.exceptions import WorkerLost
from django_bourbon_jobs.models import Job, JobQuerySet, JobStatus, Worker
from django_bourbon_jobs.serialization import error_record
from django_bourbon_jobs.worker.announce import announce_outcome

logger = logging.getLogger("django_bourbon_jobs.maintenance")

RESCUE_BATCH = 500


def settle_lost_attempts(jobs: Iterable[Job], using: str, now: datetime, reason: str) -> list[Job]:
    """Requeue (or, with no attempts left, fail) running jobs whose attempt ended without an outcome.

    Returns the jobs settled: those their worker still held. Announce them with
    :func:`announce_settled` once the change is committed.
    """
    manager = Job.objects.db_manager(using)
    settled = []
    for job in jobs:
        error = error_record(WorkerLost(reason), worker_id=job.worker_id, attempt=job.attempts, at=now)
        if manager.settle_lost_attempt(job, error, now):
            settled.append(job)
    return settled


def announce_settled(jobs: list[Job]) -> None:
    """Job events for live readers, then each job's retry or final outcome."""
    fastpath.publish_job_events(jobs)
    for job in jobs:
        announce_outcome(job, "rescued" if job.status == JobStatus.QUEUED else None)


def _settle(jobs: JobQuerySet, now: datetime, reason: str) -> int:
    """Settle a bounded batch of lost attempts; rows locked by a live claimer are skipped."""
    with transaction.atomic(using=jobs.db):
        settled = settle_lost_attempts(
            jobs.select_for_update(skip_locked=True)[:RESCUE_BATCH], jobs.db, now, reason
        )
    announce_settled(settled)
    return len(settled)


def rescue_expired_leases(now: datetime, using: str = "default") -> int:
    """Jobs whose worker stopped heartbeating (killed, host lost) go back to the queue."""
    jobs = Job.objects.db_manager(using).lease_expired(now)
    return _settle(jobs, now, "The worker's lease expired before the attempt finished.")


def rescue_worker_jobs(worker_id: str, now: datetime, reason: str, using: str = "default") -> int:
    """Settle every job a worker known to be gone still holds, without waiting for its lease."""
    jobs = Job.objects.db_manager(using).held_by(worker_id)
    return _settle(jobs, now, reason)


def forget_dead_workers(now: datetime, using: str = "default") -> int:
    stale_before = now - timedelta(seconds=get_settings().LEASE_SECONDS)
    deleted, _ = Worker.objects.db_manager(using).filter(last_heartbeat_at__lt=stale_before).delete()
    return deleted


def prune_batch(status: str, before: datetime, limit: int, using: str = "default") -> int:
    """Delete up to ``limit`` jobs of ``status`` that finished before ``before``.

    ``DELETE ... WHERE id IN (SELECT id ... LIMIT n)`` walks the
    ``(status, finished_at)`` index; each batch is its own short transaction.
    """
    jobs = Job.objects.db_manager(using)
    doomed = jobs.filter(status=status, finished_at__lt=before).order_by().values("pk")[:limit]
    deleted, _ = jobs.filter(pk__in=Subquery(doomed)).delete()
    return deleted


def prune_finished(now: datetime, using: str = "default", max_batches: int | None = None) -> int:
    """Apply ``RETENTION``: at most ``max_batches`` batches per status (``None``: until done)."""
    conf = get_settings()
    total = 0
    for status, seconds in conf.RETENTION.items():
        if seconds is None:
            continue
        before = now - timedelta(seconds=seconds)
        batches = 0
        while max_batches is None or batches < max_batches:
            deleted = prune_batch(status, before, conf.PRUNE_BATCH, using)
            total += deleted
            batches += 1
            if deleted < conf.PRUNE_BATCH:
                break
    return total


PRUNE_BATCHES_PER_PASS = 10
"""The supervisor's share of pruning per maintenance pass: bounded, so rescue never waits long."""


def run_once(now: datetime, using: str = "default") -> int:
    rescued = rescue_expired_leases(now, using)
    forget_dead_workers(now, using)
    prune_finished(now, using, max_batches=PRUNE_BATCHES_PER_PASS)
    if rescued:
        logger.warning("rescued %d job(s) with expired leases", rescued)
    return rescued
