"""The worker process's periodic duties, each a small unit whose ``run_once()`` does it if it is due.

A :class:`~django_bourbon_jobs.worker.process.WorkerProcess` calls them from its
main thread, so they run one at a time and may write the database; what they read
of the executor threads' state comes through the callables they are given, which
take the process's lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django_bourbon_jobs.models import Job, Worker
from django_bourbon_jobs.worker import claiming, db_connections
from django_bourbon_jobs.worker.executor import Executor, TimeoutWatch

logger = logging.getLogger("django_bourbon_jobs.worker")

CANCEL_CHECK_SECONDS = 0.5


@dataclass
class Heartbeat:
    """Every ``every`` seconds: renew the leases this process holds and its ``Worker`` row.

    ``started()`` lists the held jobs whose code has started (they are marked so);
    ``renewed(ids, at)`` is told which held jobs the database still gives this
    worker; ``register(now)`` re-creates a ``Worker`` row that was pruned.
    """

    using: str
    worker_id: str
    every: float
    lease: timedelta
    now: Callable[[], datetime]
    started: Callable[[], Collection[Any]]
    renewed: Callable[[set[Any], float], None]
    register: Callable[[datetime], None]
    next_at: float = field(default=0.0)

    def start(self) -> None:
        self.next_at = time.monotonic() + self.every

    def run_once(self) -> bool:
        if time.monotonic() < self.next_at:
            return False
        renewed_at = time.monotonic()
        now = self.now()
        held = claiming.extend_leases(
            using=self.using, worker_id=self.worker_id, until=now + self.lease, started=list(self.started())
        )
        self.renewed(set(held), renewed_at)
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
    running: Callable[[], Collection[Any]]
    next_at: float = field(default=0.0)

    def run_once(self) -> int:
        """How many running jobs were told to stop."""
        if time.monotonic() < self.next_at:
            return 0
        running = self.running()
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
