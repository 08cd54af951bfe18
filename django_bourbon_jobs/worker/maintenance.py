"""Background duties of the supervisor: rescue lost attempts, forget dead workers.

Each duty is one function that does one pass (``run_once``-style); the
supervisor's loop only decides when to call them.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction

from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.exceptions import WorkerLost
from django_bourbon_jobs.models import Job, JobQuerySet, JobStatus, Worker
from django_bourbon_jobs.serialization import error_record
from django_bourbon_jobs.worker.announce import announce_outcome

logger = logging.getLogger("django_bourbon_jobs.maintenance")

RESCUE_BATCH = 500


def _settle(jobs: JobQuerySet, now: datetime, reason: str) -> int:
    """Settle a bounded batch of lost attempts; rows locked by a live claimer are skipped."""
    using = jobs.db
    settled: list[Job] = []
    with transaction.atomic(using=using):
        for job in jobs.select_for_update(skip_locked=True)[:RESCUE_BATCH]:
            error = error_record(WorkerLost(reason), worker_id=job.worker_id, attempt=job.attempts, at=now)
            if Job.objects.db_manager(using).settle_lost_attempt(job, error, now):
                settled.append(job)
    for job in settled:
        announce_outcome(job, "rescued" if job.status == JobStatus.QUEUED else None)
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


def run_once(now: datetime, using: str = "default") -> int:
    rescued = rescue_expired_leases(now, using)
    forget_dead_workers(now, using)
    if rescued:
        logger.warning("rescued %d job(s) with expired leases", rescued)
    return rescued
