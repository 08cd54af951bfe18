"""The worker process's periodic duties, each a small unit whose ``run_once()`` does it if it is due.

A :class:`~django_bourbon_jobs.worker.process.WorkerProcess` calls them from its
main thread, so they run one at a time and may write the database; what they read
of the executor threads' state comes from the :class:`~.pool.ExecutorPool`, under its lock.
The other units the loop calls: :class:`~.claimer.Claimer` and :class:`~.outcome_writer.OutcomeWriter`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django_bourbon_jobs.models import Job, Worker
from django_bourbon_jobs.store.portable import PortableStore
from django_bourbon_jobs.worker import db_connections
from django_bourbon_jobs.worker.executor import Executor, TimeoutWatch, Watched
from django_bourbon_jobs.worker.lifeline import MemoryWatch, ParentWatch
from django_bourbon_jobs.worker.pool import ExecutorPool

logger = logging.getLogger("django_bourbon_jobs.worker")

CANCEL_CHECK_SECONDS = 0.5


@dataclass
class Heartbeat:
    """Every ``every`` seconds: renew the leases this process holds and its ``Worker`` row.

    The held jobs whose code has started are marked so; the pool is told which
    held jobs the database still gives this worker; ``register(now)`` re-creates a
    ``Worker`` row that was pruned.
    """

    store: PortableStore
    using: str
    worker_id: str
    every: float
    lease: timedelta
    now: Callable[[], datetime]
    pool: ExecutorPool
    register: Callable[[datetime], None]
    next_at: float = field(default=0.0)

    def start(self) -> None:
        self.next_at = time.monotonic() + self.every

    def run_once(self) -> bool:
        if time.monotonic() < self.next_at:
            return False
        renewed_at = time.monotonic()
        now = self.now()
        held = self.store.extend_leases(
            using=self.using,
            worker_id=self.worker_id,
            until=now + self.lease,
            started=self.pool.started_ids(),
        )
        self.pool.renewed(set(held), renewed_at)
        if not Worker.objects.db_manager(self.using).filter(pk=self.worker_id).update(last_heartbeat_at=now):
            logger.warning("worker %s row was pruned; re-registering", self.worker_id)
            self.register(now)
        self.next_at = time.monotonic() + self.every
        db_connections.close_if_broken_or_old(self.using)
        return True


@dataclass
class CancelRelay:
    """Pass cancel requests to the running jobs they name: one indexed query, only while jobs run."""

    using: str
    worker_id: str
    executor: Executor
    watch: TimeoutWatch
    pool: ExecutorPool
    next_at: float = field(default=0.0)

    def run_once(self) -> int:
        """How many running jobs were told to stop."""
        if time.monotonic() < self.next_at:
            return 0
        running = self.pool.started_ids()
        if not running:
            return 0
        self.next_at = time.monotonic() + CANCEL_CHECK_SECONDS
        requested = (
            Job.objects.db_manager(self.using)
            .held_by(self.worker_id)
            .filter(pk__in=list(running), cancel_requested_at__isnull=False)
        )
        told = 0
        for pk in requested.values_list("pk", flat=True):
            flag = self.executor.cancel_flags.get(pk)
            if flag is not None and not flag.is_set():
                flag.set()
                self.watch.stop_soon(pk)
                told += 1
        return told


@dataclass
class TimeoutEnforcer:
    """Interrupt jobs past their deadline; a job that ignores the interrupt is handed to ``abandon``.

    ``abandon`` records it and replaces the process: a thread that will not stop
    cannot be reclaimed any other way.
    """

    watch: TimeoutWatch
    abandon: Callable[[list[Watched]], None]

    def run_once(self) -> int:
        """How many jobs ignored their interrupt (``abandon`` does not return when there are any)."""
        stuck = self.watch.enforce()
        if stuck:
            self.abandon(stuck)
        return len(stuck)


@dataclass
class Retirement:
    """Decide, once, that the process stops claiming: its supervisor died, or memory passed the limit."""

    worker_id: str
    parent: ParentWatch
    memory: MemoryWatch
    max_memory_mb: int | None
    reason: str = ""
    """Why the process is stopping of its own accord; empty if it is not."""

    def run_once(self) -> str:
        if self.reason:
            return self.reason
        if self.parent.parent_gone():
            self.reason = "its supervisor died"
            logger.warning("worker %s: %s; stopping", self.worker_id, self.reason)
        elif self.memory.run_once():
            self.reason = (
                f"its memory ({self.memory.rss / 2**20:.0f} MB) passed --max-memory ({self.max_memory_mb} MB)"
            )
            logger.warning("worker %s: %s; replacing it after its current jobs", self.worker_id, self.reason)
        return self.reason
