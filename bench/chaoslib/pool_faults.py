"""Scenarios 5 and 6: a whole pool paused past its lease, and supervisors sent SIGTERM.

Scenario 5 SIGSTOPs one of two pools (supervisor and children, its process group) for
``LEASE_SECONDS + 3`` s mid-run, then SIGCONTs it. Scenario 6 runs 8 jobs of 2 s and
sends SIGTERM to a supervisor once its 4 slots are busy, first with a ``--grace`` that
covers the jobs (5 s), then with one that does not (0.5 s); a fresh pool ends the rest.
"""

from __future__ import annotations

import collections
import signal
import time

from .config import SMALL_POOL
from .db import query, try_query
from .harness import Run
from .jobs import dispatch_plain
from .processes import wait_for
from .rows import Scenario


def scenario_pool_pause(run: Run, s: Scenario) -> None:
    """5: one of two pools (its whole process group) SIGSTOPped for LEASE_SECONDS + 3 s."""
    ids = dispatch_plain(run.small_jobs, run.args.sleep_ms)
    s.add(ids, "plain")
    paused, _ = run.pool("s5-a", *SMALL_POOL), run.pool("s5-b", *SMALL_POOL)
    run.wait_for_tail(len(ids))
    paused.signal_group(signal.SIGSTOP)
    s.fault(f"SIGSTOP process group of s5-a ({len(paused.workers()) + 1} processes)")
    time.sleep(run.lease + 3)
    paused.signal_group(signal.SIGCONT)
    s.fault("SIGCONT s5-a")
    s.fault_over()


def all_slots_busy(slots: int) -> bool:
    """``slots`` jobs are running, or at least one is and none is left queued (all claimed)."""
    rows = try_query(
        "SELECT (SELECT count(*) FROM chaosapp_execution WHERE finished_at IS NULL),"
        " (SELECT count(*) FROM bourbon_jobs_job WHERE status = 'queued')"
    )
    if not rows:
        return False
    running, queued = rows[0]
    return bool(running >= slots or (running and not queued))


def _running_now(s: Scenario, name: str) -> set[str]:
    """Ids of the jobs running now; the note of how many each process runs."""
    rows = query("SELECT job_id, pid FROM chaosapp_execution WHERE finished_at IS NULL")
    running = {str(job_id) for job_id, _ in rows}
    s.row.notes.append(
        f"{name}: running at SIGTERM per process: {sorted(collections.Counter(p for _, p in rows).values())}"
    )
    return running


def _succeeded(ids: set[str]) -> int:
    return int(
        query(
            "SELECT count(*) FROM bourbon_jobs_job WHERE id::text = ANY(%s) AND status = 'succeeded'",
            [list(ids)],
        )[0][0]
    )


def _terminate_with_grace(run: Run, s: Scenario, name: str, grace: str) -> tuple[int, int]:
    """Start a pool, SIGTERM it once its 4 slots run 2 s jobs; (jobs running at SIGTERM, finished since)."""
    pool = run.pool(name, "--processes", "2", "--threads", "2", "--grace", grace)
    if not wait_for(lambda: all_slots_busy(4), run.args.deadline, 0.05):
        s.row.notes.append(f"{name}: its jobs never started")
    running = _running_now(s, name)
    pool.terminate()
    s.fault(f"SIGTERM {name} (--grace {grace}) with {len(running)} jobs running")
    began = time.monotonic()
    code = pool.wait(float(grace) + 15)
    s.row.notes.append(f"{name} --grace {grace}: exited with {code} after {time.monotonic() - began:.1f}s")
    return len(running), _succeeded(running)


def scenario_sigterm(run: Run, s: Scenario) -> None:
    """6: SIGTERM with 2 s jobs running, --grace 5 (covers them) then 0.5 (does not); a fresh pool ends."""
    s.add(dispatch_plain(8, 2000), "plain")
    running, finished = _terminate_with_grace(run, s, "s6-grace5", "5")
    s.row.notes.append(f"grace 5: {finished}/{running} running jobs finished within the grace")
    running, finished = _terminate_with_grace(run, s, "s6-grace0.5", "0.5")
    s.row.notes.append(f"grace 0.5: {finished}/{running} running jobs finished (expected 0: requeued)")
    s.fault_over()
    run.pool("s6-fresh", "--processes", "2", "--threads", "2")
