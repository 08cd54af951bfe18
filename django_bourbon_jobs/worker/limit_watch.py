"""What a worker knows of flow control: whether limits exist, and when a limit next lets a job start.

The plain claim serves while no ``Limit`` row exists, so a system without limits
pays nothing for them; whether rows exist is read again every
:data:`CHECK_SECONDS`. A claim that came back short while limits exist asks when
a rate window or an open circuit next lets a waiting job start, and the worker
sleeps until then (or until a wake-up: a job leaving ``running`` under a
concurrency limit wakes its queue's workers), never in a busy loop.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from django_bourbon_jobs.conf import queue_limit_specs
from django_bourbon_jobs.store.portable import PortableStore

CHECK_SECONDS = 2.0
"""How often a worker reads again whether any limit exists (a first limited enqueue waits up to this)."""


@dataclass
class LimitWatch:
    store: PortableStore
    using: str
    queues: Collection[str]
    active: bool = False
    """Limit rows exist: claims use the limited claim."""
    opening_at: float | None = None
    """Monotonic time a rate window or a circuit next lets a waiting job start; ``None`` if none waits."""
    next_check: float = field(default=0.0)
    synced: bool = False

    def limited(self) -> bool:
        """Whether to use the limited claim; the first call writes ``QUEUE_LIMITS`` to the database."""
        if not self.synced:
            self.store.sync_queue_limits(self.using, queue_limit_specs())
            self.synced = True
        if time.monotonic() >= self.next_check:
            self.active = self.store.limits_exist(self.using)
            self.next_check = time.monotonic() + CHECK_SECONDS
        return self.active

    def claimed(self, got: int, asked: int, now: datetime) -> None:
        """After a limited claim: if it came back short, find when a limit next opens."""
        self.opening_at = None
        if got >= asked:
            return
        opening = self.store.next_limit_opening(self.using, self.queues, now)
        if opening is not None:
            self.opening_at = time.monotonic() + max((opening - now).total_seconds(), 0.0)

    def seconds_to_opening(self) -> float | None:
        if self.opening_at is None:
            return None
        return max(self.opening_at - time.monotonic(), 0.0)
