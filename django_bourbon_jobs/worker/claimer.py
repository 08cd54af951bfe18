"""The claim duty: when the pool has room, claim a batch of due jobs and hand it over."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django_bourbon_jobs.events import publish
from django_bourbon_jobs.store.portable import PortableStore
from django_bourbon_jobs.worker.claim_sizer import ClaimSizer
from django_bourbon_jobs.worker.limit_watch import LimitWatch
from django_bourbon_jobs.worker.pool import ExecutorPool


@dataclass
class Claimer:
    store: PortableStore
    using: str
    worker_id: str
    queues: Collection[str]
    pool: ExecutorPool
    sizer: ClaimSizer
    lease: timedelta
    now: Callable[[], datetime]
    stopping: threading.Event
    max_jobs: int | None = None
    """Claim no more than this many jobs in the process's life."""
    claimed_total: int = field(default=0)
    limits: LimitWatch | None = None
    """Flow control; ``None`` claims only unlimited jobs."""

    def run_once(self) -> int:
        """Claim if the pool has room; returns how many jobs were claimed."""
        if self.stopping.is_set() or not self.sizer.room(self.pool.queued()):
            return 0
        limit = self.sizer.size
        if self.max_jobs is not None:
            limit = min(limit, self.max_jobs - self.claimed_total)
        if limit <= 0:
            return 0
        claimed_at = time.monotonic()
        now = self.now()
        # A limited job starts when it is claimed: only as many as threads are free to start them.
        idle = self.pool.idle_threads()
        limited = idle > 0 and self.limits is not None and self.limits.limited()
        jobs = self.store.claim(
            using=self.using,
            worker_id=self.worker_id,
            queues=self.queues,
            limit=limit,
            now=now,
            lease_until=now + self.lease,
            limited=limited,
            limited_room=idle if limited else 0,
        )
        if limited and self.limits is not None:
            self.limits.claimed(len(jobs), limit, now)
        self.claimed_total += len(jobs)
        self.sizer.claimed(len(jobs), limit)
        self.pool.hand_over(jobs, claimed_at)
        # After the hand-over: the publisher thread then competes with jobs already started.
        publish.publish_job_events(jobs)
        return len(jobs)
