"""Where the chaos run's files are and the numbers it does not take as options.

Paths (the repository, the small Django project the workers run, PostgreSQL's server
binaries), the fixed tunables (how much work is left when a fault strikes, the
convergence allowance, the pool shapes, the job states that are still open, the poison
kinds) and the one stderr log line every module writes through.
"""

from __future__ import annotations

import glob
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PROJECT = ROOT / "bench" / "chaos_project"
PG_BIN = Path(
    os.environ.get("CHAOS_PG_BIN")
    or max(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), default="/usr/bin")
)
"""PostgreSQL's server binaries (``initdb``, ``pg_ctl``): Debian's newest, or ``CHAOS_PG_BIN``."""
TAIL_SECONDS = 2.0
"""Scenarios 2-5 strike when about this much work is left (see ``Run.wait_for_tail``)."""
ALLOWANCE = 3.0
"""Seconds allowed on top of ``LEASE_SECONDS + RESCUE_INTERVAL`` for convergence: worker
start-up, a retry's backoff (``BACKOFF_MAX`` 1 s) and the few jobs still left to run."""
OPEN = ("queued", "running")
POISONS = ("exit_hard", "kill_self", "hog", "stuck_in_c", "nul_return")
POOL = ("--processes", "4", "--threads", "4")
SMALL_POOL = ("--processes", "2", "--threads", "4")
DB_NAME = "chaos"


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
