"""Scenarios 2-4: a service taken away mid-run and given back.

Each runs a quarter of ``--jobs`` plain jobs (at least 200) on one pool and strikes once
about two seconds of work are left: PostgreSQL stopped with ``pg_ctl stop -m immediate``
and started 5 s later (2), every process of the cluster SIGSTOPped then SIGCONTed (3),
redis-server SIGKILLed and started again on its port while jobs are enqueued (4).
"""

from __future__ import annotations

import time

from .config import POOL
from .harness import Run
from .jobs import dispatch_plain, enqueue_one
from .rows import Scenario


def _run_to_tail(run: Run, s: Scenario, name: str, **env: str) -> None:
    """Dispatch the plain jobs, start the pool, and wait until the fault should strike."""
    ids = dispatch_plain(run.small_jobs, run.args.sleep_ms)
    s.add(ids, "plain")
    run.pool(name, *POOL, **env)
    run.wait_for_tail(len(ids))


def scenario_pg_stop(run: Run, s: Scenario) -> None:
    """2: ``pg_ctl stop -m immediate`` mid-run, started again 5 s later."""
    _run_to_tail(run, s, "s2")
    s.fault("pg_ctl stop -m immediate")
    run.pg.stop_immediate()
    time.sleep(5)
    run.pg.start()
    s.fault("PostgreSQL started again")
    s.fault_over()


def scenario_pg_pause(run: Run, s: Scenario) -> None:
    """3: SIGSTOP every process of the cluster for 10 s (6 s with --short), then SIGCONT."""
    _run_to_tail(run, s, "s3")
    paused = run.pg.pause()
    s.fault(f"SIGSTOP {len(paused)} PostgreSQL processes")
    time.sleep(run.args.pg_pause)
    run.pg.resume()
    s.fault("SIGCONT PostgreSQL")
    s.fault_over()


def scenario_redis(run: Run, s: Scenario) -> None:
    """4: Redis SIGKILLed for 10 s (5 s with --short) and started again; jobs dispatched meanwhile."""
    _run_to_tail(run, s, "s4", CHAOS_USE_REDIS="1")
    run.redis.kill()
    s.fault("SIGKILL redis-server")
    down_until = time.monotonic() + run.args.redis_down
    s.add([enqueue_one("plain", {"sleep_ms": run.args.sleep_ms}) for _ in range(50)], "plain")
    time.sleep(max(down_until - time.monotonic(), 0))
    run.redis.start()
    s.fault("redis-server started again")
    s.fault_over()
    s.add([enqueue_one("plain", {"sleep_ms": run.args.sleep_ms}) for _ in range(50)], "plain")
    s.row.notes.append("50 jobs enqueued one by one while Redis was down, 50 after")
