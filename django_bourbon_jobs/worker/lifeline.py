"""What retires a worker process besides a signal: its supervisor's death, its own memory.

**No orphans.** A child whose supervisor dies must not go on claiming with
nobody to replace it or settle its jobs. On Linux the kernel sends it SIGTERM
the moment the supervisor dies (``prctl(PR_SET_PDEATHSIG)``), which starts the
ordinary graceful stop; everywhere, :class:`ParentWatch` also notices that its
parent changed (the loop checks at least once a second).

**The OOM killer takes a worker, not its supervisor.** A worker process raises
its ``oom_score_adj`` :data:`OOM_SCORE_RAISE` above its supervisor's, so when
their memory cgroup runs out the kernel kills a worker, and the supervisor lives
to settle that worker's jobs and start a new one. (Raising needs no privilege.)

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
OOM_SCORE_RAISE = 500
OOM_SCORE_ADJ = "/proc/self/oom_score_adj"


def set_parent_death_signal(signum: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent dies; false elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return bool(libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0)


def prefer_for_oom_kill(raise_by: int = OOM_SCORE_RAISE) -> int | None:
    """Raise ``oom_score_adj`` by ``raise_by`` (at most to 1000); the new value, or None off Linux."""
    try:
        with open(OOM_SCORE_ADJ, "r+") as adj:
            value = min(1000, int(adj.read()) + raise_by)
            adj.seek(0)
            adj.write(str(value))
    except OSError:
        return None
    return value


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
