"""What every scenario is handed: the options, the services, and a way to start pools.

:class:`Run` is built once by ``main`` after the services are up and Django is migrated.
It starts the scenario's ``runworkers`` pools (and closes them when the scenario ends),
knows the convergence bar (``LEASE_SECONDS + RESCUE_INTERVAL + ALLOWANCE``) and the
size of the smaller scenarios, and waits for the moment a fault should strike.
"""

from __future__ import annotations

import argparse
import collections
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import ALLOWANCE, TAIL_SECONDS
from .jobs import open_jobs
from .pools import Pool, worker_env
from .processes import wait_for
from .services import Postgres, Redis


def _little_left(history: collections.deque[tuple[float, int]], total: int, seconds: float) -> bool:
    """At most ``seconds`` of work left at the pace of the last second (``history``: (when, done))."""
    left = open_jobs()
    if left is None:
        return False
    now = time.monotonic()
    history.append((now, total - left))
    while now - history[0][0] > 1.0:
        history.popleft()
    (began, done_then), done = history[0], total - left
    pace = (done - done_then) / max(now - began, 0.1)
    return done > 0 and left <= pace * seconds


@dataclass
class Run:
    """What every scenario needs: options, services, and a way to start pools."""

    args: argparse.Namespace
    workdir: Path
    pg: Postgres
    redis: Redis
    lease: float
    rescue: float
    pools: list[Pool] = field(default_factory=list)

    @property
    def limit(self) -> float:
        return self.lease + self.rescue + ALLOWANCE

    @property
    def small_jobs(self) -> int:
        return max(self.args.jobs // 4, 200)

    def pool(self, name: str, *args: str, **env: str) -> Pool:
        pool = Pool(name, args, worker_env(**env), self.workdir, self.args.python)
        self.pools.append(pool)
        pool.start()
        return pool

    def close_pools(self) -> None:
        while self.pools:
            self.pools.pop().close()

    def wait_for_tail(self, total: int, seconds: float = TAIL_SECONDS) -> None:
        """Wait until about ``seconds`` of work is left at the pool's current pace.

        The fault then lands mid-run, with jobs running and queued, and what is left
        after it runs in a second or two: the convergence time is the recovery, not the
        drain of a backlog (which with ``CONN_MAX_AGE`` 0 runs a few hundred jobs a second).
        """
        history: collections.deque[tuple[float, int]] = collections.deque()
        wait_for(lambda: _little_left(history, total, seconds), self.args.deadline, interval=0.1)
