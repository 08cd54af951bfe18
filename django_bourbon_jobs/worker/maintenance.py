"""Background duties of the supervisor: rescue lost attempts, forget dead workers, prune old jobs.

:class:`Rescuer` and :class:`Pruner` are the supervisor's units: each ``run_once(now)``
does one bounded pass if it is due. The functions under them are also used by the
worker process (handing back, settling) and by ``manage.py prunejobs``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.db import transaction
from django.db.models import Subquery

from django_bourbon_jobs import step_changes, store
from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.events import publish
from django_bourbon_jobs.exceptions import WorkerLost
from django_bourbon_jobs.models import Job, JobStatus, Worker
from django_bourbon_jobs.periodic.firing import PeriodicFirer
from django_bourbon_jobs.retry import REFUNDS_PER_JOB
from django_bourbon_jobs.serialization import error_record
from django_bourbon_jobs.store import steps
from django_bourbon_jobs.store.portable import PortableStore
from django_bourbon_jobs.worker.announce import announce_outcome

logger = logging.getLogger("django_bourbon_jobs.maintenance")

RESCUE_BATCH = 500
NOT_SEEN_STARTED = "Its worker had not reported it started, so the attempt is not counted."
RETURNED_NOT_STORED = (
    "The job's code had returned but its outcome was not stored yet: it runs again, and the attempt "
    "is not counted."
)

RefundNote = Callable[[Job], str] | None


class StartLogView(Protocol):
    def running(self) -> set[uuid.UUID]: ...
    def returned(self) -> set[uuid.UUID]: ...


def settle_lost_attempts(
    jobs: Iterable[Job], using: str, now: datetime, reason: str, refund_note: RefundNote = None
) -> list[Job]:
    """Requeue (or, with no attempts left, fail) running jobs whose attempt ended without an outcome.

    ``refund_note(job)`` says why a job is not to blame (``""`` if it is): its
    attempt is then given back, up to ``REFUNDS_PER_JOB`` times, and the
    ``WorkerLost`` error says so and is marked ``"charged": false``. Returns the
    jobs settled: those their worker still held. Announce them with
    :func:`announce_settled` once the change is committed.
    """
    manager = Job.objects.db_manager(using)
    settled = []
    with transaction.atomic(using=using, savepoint=False):
        for job in jobs:
            error = error_record(WorkerLost(reason), worker_id=job.worker_id, attempt=job.attempts, at=now)
            note = refund_note(job) if refund_note else ""
            if note and job.refunded_attempts < REFUNDS_PER_JOB:
                error = {**error, "message": f"{error['message']} {note}", "charged": False}
            if manager.settle_lost_attempt(job, error, now):
                settled.append(job)
        _fail_steps_onward(settled, using, now)
    return settled


def _fail_steps_onward(settled: list[Job], using: str, now: datetime) -> None:
    """Workflow steps that failed for good cancel their dependents, in the transaction that failed them."""
    failed = [(job.pk, job.status, job.workflow_id) for job in settled if job.workflow_id is not None]
    failed = [step for step in failed if step[1] == JobStatus.FAILED]
    if failed:
        changes = steps.settle_finished(using, failed, now, store.for_connection(using).notify)
        transaction.on_commit(lambda: step_changes.announce(changes, using), using=using)


def _unless_reported_started(job: Job) -> str:
    return "" if job.attempt_started else NOT_SEEN_STARTED


def _returned(job: Job) -> str:
    return RETURNED_NOT_STORED


def announce_settled(jobs: list[Job]) -> None:
    """Job events for live readers, then each job's retry or final outcome.

    A job failed for good is announced while its ``WorkerLost`` is handled, as any failure is.
    """
    publish.publish_job_events(jobs)
    for job in jobs:
        if job.status == JobStatus.QUEUED:
            announce_outcome(job, "rescued")
        else:
            announce_outcome(job, exception=WorkerLost(job.errors[-1]["message"]) if job.errors else None)


def rescue_expired_leases(now: datetime, using: str = "default") -> int:
    """Jobs whose worker stopped heartbeating (killed, host lost) go back to the queue.

    A bounded batch; rows locked by a live claimer are skipped.
    """
    jobs = Job.objects.db_manager(using).lease_expired(now)
    reason = "The worker's lease expired before the attempt finished."
    with transaction.atomic(using=using):
        store.for_connection(using).lock_limits_of(using, jobs)  # before the jobs, as claims do
        expired = jobs.select_for_update(skip_locked=True)[:RESCUE_BATCH]
        settled = settle_lost_attempts(expired, using, now, reason, _unless_reported_started)
    announce_settled(settled)
    return len(settled)


def hand_back(storage: PortableStore, worker_id: str, job_ids: list[Any], using: str = "default") -> int:
    """Queue jobs ``worker_id`` claimed but never started, as if never claimed; announce it on commit."""
    if not job_ids:
        return 0
    released = storage.release(using, worker_id, job_ids)
    publish.publish_job_changes(job_ids, using)
    return released


def settle_dead_worker(
    worker_id: str,
    log: StartLogView,
    reason: str,
    now: datetime,
    using: str = "default",
) -> int:
    """A worker process known to be dead: charge the jobs whose code it was running.

    ``log`` is the process's start log. A job whose code had returned, its
    outcome not yet stored, runs again with its attempt given back and an error
    that says so. Any other job it held (claimed, never started) goes back to
    the queue as if never claimed: no attempt, no error. Returns the jobs
    settled or handed back.
    """
    running, returned = log.running(), log.returned()
    jobs = Job.objects.db_manager(using).held_by(worker_id)
    with transaction.atomic(using=using):
        store.for_connection(using).lock_limits_of(using, jobs)  # before the jobs, as claims do
        held = list(jobs.select_for_update(skip_locked=True))
        ran = [job for job in held if job.pk in running]
        came_back = [job for job in held if job.pk in returned]
        unstarted = [job.pk for job in held if job.pk not in running and job.pk not in returned]
        released = hand_back(store.for_connection(using), worker_id, unstarted, using)
        settled = settle_lost_attempts(ran, using, now, reason + _running_together(ran))
        settled += settle_lost_attempts(came_back, using, now, reason, _returned)
    announce_settled(settled)
    return released + len(settled)


def _running_together(jobs: list[Job]) -> str:
    """Name the jobs that were running side by side, so an operator can tell which one killed it."""
    if len(jobs) < 2:
        return ""
    return f" It was running {len(jobs)} jobs at once: {', '.join(sorted(str(job.pk) for job in jobs))}."


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
    steps.prune_empty_workflows(using, conf.PRUNE_BATCH)
    return total


PRUNE_BATCHES_PER_PASS = 10
"""The supervisor's share of pruning per maintenance pass: bounded, so rescue never waits long."""


@dataclass
class SupervisorDuty:
    """A pass every ``every`` seconds; the supervisor sleeps until the earliest :attr:`next_at`."""

    using: str
    every: float
    next_at: float = field(default=0.0)

    def run_once(self, now: datetime) -> int:
        """Do the pass if it is due; returns what it did (rows rescued, pruned...)."""
        if time.monotonic() < self.next_at:
            return 0
        self.next_at = time.monotonic() + self.every
        return self.run(now)

    def run(self, now: datetime) -> int:
        raise NotImplementedError


class Rescuer(SupervisorDuty):
    """Requeue attempts whose lease ran out (their worker died unseen), and forget dead workers."""

    def run(self, now: datetime) -> int:
        rescued = rescue_expired_leases(now, self.using)
        forget_dead_workers(now, self.using)
        if rescued:
            logger.warning("rescued %d job(s) with expired leases", rescued)
        return rescued


@dataclass
class Firing(SupervisorDuty):
    """Periodic schedules (:mod:`django_bourbon_jobs.periodic`): the firer says when it is next due."""

    firer: PeriodicFirer = field(kw_only=True)

    def run(self, now: datetime) -> int:
        wait = self.firer.run_once(now)
        self.next_at = time.monotonic() + wait
        return 0


class HeldSteps(SupervisorDuty):
    """Queue workflow steps that wait for their unique key once the job holding it leaves scope."""

    def run(self, now: datetime) -> int:
        return release_held_steps(now, self.using)


def release_held_steps(now: datetime, using: str) -> int:
    """One pass of :class:`HeldSteps` (``drain()`` runs it too); how many steps it queued."""
    changes = steps.release_held_steps(using, now, store.for_connection(using).notify)
    step_changes.announce(changes, using)
    return len(changes.released)


class Pruner(SupervisorDuty):
    """Apply ``RETENTION``, a bounded share per pass so that rescue never waits long."""

    def run(self, now: datetime) -> int:
        return prune_finished(now, self.using, max_batches=PRUNE_BATCHES_PER_PASS)
