"""What retires a worker process besides a signal: its supervisor's death, its own memory.

**No orphans.** A child whose supervisor dies must not go on claiming with
nobody to replace it or settle its jobs. On Linux the kernel sends it SIGTERM
the moment the supervisor dies (``prctl(PR_SET_PDEATHSIG)``), which starts the
ordinary graceful stop; everywhere, :class:`ParentWatch` also notices that its
parent changed (the loop checks at least once a second).

**Memory.** ``runworkers --max-memory MB`` retires a process whose resident
memory passed the limit once its current jobs finish, as Celery's
``worker_max_memory_per_child`` does; the supervisor starts a fresh one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field

from django_bourbon_jobs.worker.exits import resident_memory
from django_bourbon_jobs.worker.startlog import StartLog

logger = logging.getLogger("django_bourbon_jobs.worker")

PR_SET_PDEATHSIG = 1
MEMORY_CHECK_SECONDS = 1.0


def set_parent_death_signal(signum: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent dies; false elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return bool(libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0)


@dataclass
class ParentWatch:
    """``parent_pid`` is the supervisor's; ``None`` (a worker run on its own) watches nothing."""

    parent_pid: int | None

    def parent_gone(self) -> bool:
        return self.parent_pid is not None and os.getppid() != self.parent_pid


@dataclass
class MemoryWatch:
    """Measure resident memory once a second; say when it passed ``limit_mb``."""

    limit_mb: int | None
    start_log: StartLog
    clock: float = 0.0
    rss: int = field(default=0)

    def run_once(self) -> bool:
        """True once the process is over its limit (measured at most every second)."""
        now = time.monotonic()
        if now < self.clock:
            return False
        self.clock = now + MEMORY_CHECK_SECONDS
        self.rss = resident_memory()
        self.start_log.record_rss(self.rss)
        return self.over_limit()

    def over_limit(self) -> bool:
        return self.limit_mb is not None and self.rss > self.limit_mb * 2**20
