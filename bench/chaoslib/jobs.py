"""Jobs of a scenario: dispatching them, and how many are still open.

Plain jobs go in bulk (``dispatch_many``, COPY), single jobs one by one through
``Task.enqueue()``; :func:`open_jobs` counts the queued and running ones (``None`` while
the database is unreachable), from which the progress and the moment every job was
final are read.
"""

from __future__ import annotations

import time
from typing import Any

from .db import try_query
from .processes import wait_for


def dispatch_plain(count: int, sleep_ms: int, once: bool = False) -> list[str]:
    """Dispatch ``count`` plain jobs in bulk (COPY); their ids."""
    from chaosapp import tasks

    from django_bourbon_jobs import dispatch_many

    task = tasks.plain_once if once else tasks.plain
    ids: list[str] = []
    for start in range(0, count, 5000):
        size = min(5000, count - start)
        ids += [r.id for r in dispatch_many(task, [{"sleep_ms": sleep_ms}] * size)]
    return ids


def enqueue_one(task_name: str, payload: Any = None) -> str:
    """One job through ``Task.enqueue()`` (its own transaction, NOTIFY and Redis publish)."""
    from chaosapp import tasks

    return str(getattr(tasks, task_name).enqueue(payload).id)


def open_jobs() -> int | None:
    rows = try_query("SELECT count(*) FROM bourbon_jobs_job WHERE status IN ('queued', 'running')")
    return None if rows is None else int(rows[0][0])


def finished_fraction(total: int) -> float | None:
    left = open_jobs()
    return None if left is None else 1 - left / max(total, 1)


def wait_until_settled(deadline_s: float) -> float | None:
    """Poll until no job is queued or running; the wall-clock time that was first seen, or ``None``."""
    if wait_for(lambda: open_jobs() == 0, deadline_s, interval=0.1):
        return time.time()
    return None
