"""Scenario 7: poison jobs, made to fail, among plain ones on one pool.

One (``--short``) or two of each poison kind (``os._exit``, a SIGKILL of its own process,
a memory hog under ``runworkers --max-memory``, a job stuck in C past its timeout, a
return value with a NUL), shuffled among a quarter of ``--jobs`` plain jobs. The
scenario's faults are the poison jobs themselves: they end with the last one's end.
"""

from __future__ import annotations

import random

from .config import POISONS, POOL
from .db import query
from .harness import Run
from .jobs import dispatch_plain, enqueue_one
from .pools import runworkers_supports
from .rows import Scenario


def _kinds_and_pool(run: Run, s: Scenario) -> tuple[list[str], list[str]]:
    """The poison kinds to run and the pool's options: the hog only with ``--max-memory``."""
    kinds = list(POISONS)
    pool_args = list(POOL)
    if run.args.hog and runworkers_supports(run.args.python, "--max-memory"):
        pool_args += ["--max-memory", str(run.args.max_memory)]
    else:
        kinds.remove("hog")
        s.row.notes.append("hog skipped: runworkers has no --max-memory" if run.args.hog else "hog skipped")
    return kinds, pool_args


def scenario_poison(run: Run, s: Scenario) -> None:
    """7: each poison kind (a few of each) dispatched among plain jobs."""
    kinds, pool_args = _kinds_and_pool(run, s)
    per_kind = 1 if run.args.short else 2
    poisons = [kind for kind in kinds for _ in range(per_kind)]
    random.shuffle(poisons)
    chunk = run.small_jobs // (len(poisons) + 1)
    for kind in poisons:
        s.add(dispatch_plain(chunk, run.args.sleep_ms), "plain")
        s.add([enqueue_one(kind, {"cap_mb": run.args.hog_cap})], kind)
    s.add(dispatch_plain(chunk, run.args.sleep_ms), "plain")
    run.pool("s7", *pool_args)


def poison_fault_end() -> float | None:
    """Scenario 7's faults are its poison jobs: they end when the last of them reaches its final state."""
    names = [f"chaosapp.tasks.{kind}" for kind in POISONS]
    [(last,)] = query(
        "SELECT extract(epoch FROM max(finished_at)) FROM bourbon_jobs_job WHERE task_path = ANY(%s)", [names]
    )
    return None if last is None else float(last)
