"""Scenario 1: worker processes SIGKILLed every second, each supervisor SIGKILLed once.

Two pools run plain jobs with ``max_attempts=1``. From the first finished job until every
job is final (or progress stops for ``--deadline`` seconds), a random worker process of
either pool, children and orphans alike, is SIGKILLed every ``--kill-every`` seconds;
each supervisor is SIGKILLed alone at 1/3 and 2/3 of the jobs and started again.
"""

from __future__ import annotations

import random
import signal
import time

from .config import POOL
from .harness import Run
from .jobs import dispatch_plain, finished_fraction
from .pools import Pool
from .processes import send
from .rows import Scenario


def kill_random_worker(s: Scenario, pools: list[Pool]) -> None:
    """SIGKILL one worker process, children and orphans alike (never a supervisor)."""
    victims = [pid for pool in pools for pid in pool.workers()]
    if victims:
        victim = random.choice(victims)
        send([victim], signal.SIGKILL)
        s.fault(f"SIGKILL worker pid {victim}")
        s.fault_over()


def restart_supervisor(s: Scenario, pool: Pool, done: float) -> None:
    """SIGKILL the supervisor alone (its children are left to notice) and start the command again."""
    pool.kill_supervisor()
    s.fault(f"SIGKILL supervisor {pool.name} (pid {pool.supervisor}) at {done:.0%}")
    pool.start()
    s.fault_over()


def _restart_due(s: Scenario, pools: list[Pool], restart_at: dict[str, float], done: float) -> None:
    """Restart each supervisor whose share of the jobs is done, once."""
    for pool in pools:
        if done >= restart_at.get(pool.name, 2):
            del restart_at[pool.name]
            restart_supervisor(s, pool, done)


def _kill_until_done(run: Run, s: Scenario, pools: list[Pool], total: int) -> None:
    """The kills, from the first finished job until all are final or progress stalls."""
    restart_at = {pools[0].name: 1 / 3, pools[1].name: 2 / 3}
    next_kill, last_done, progress_at = float("inf"), 0.0, time.monotonic()
    while time.monotonic() - progress_at < run.args.deadline and last_done < 1:
        done = finished_fraction(total)
        if done is not None and done > last_done:
            last_done, progress_at = done, time.monotonic()
            if next_kill == float("inf"):
                next_kill = time.monotonic()  # the kills start with the first finished job
        _restart_due(s, pools, restart_at, last_done)
        if time.monotonic() >= next_kill and last_done < 1:
            next_kill += run.args.kill_every
            kill_random_worker(s, pools)
        time.sleep(0.1)


def scenario_kills(run: Run, s: Scenario) -> None:
    """1: two pools; a random worker process SIGKILLed every second (--kill-every); each supervisor once."""
    ids = dispatch_plain(run.args.jobs, run.args.sleep_ms, once=True)
    s.add(ids, "plain_once")
    pools = [run.pool("s1-a", *POOL), run.pool("s1-b", *POOL)]
    _kill_until_done(run, s, pools, len(ids))
    orphans = sum(len(p.workers()) - len(p.children()) for p in pools)
    s.row.notes.append(f"{orphans} workers of killed supervisors still alive at the end")
