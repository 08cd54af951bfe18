"""What the database says happened: every job's row, every execution, every attempt start.

After a scenario settles, :func:`load_jobs` reads each job's task, status, attempts and
errors, :func:`load_executions` the ``Execution`` rows the plain jobs inserted, and
:func:`load_starts` the ids the ``task_started`` receiver appended to the scenario's
``starts-N.log``.
"""

from __future__ import annotations

import collections
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .db import query


@dataclass
class JobRecord:
    task_path: str
    status: str
    attempts: int
    errors: list[dict[str, Any]]


@dataclass
class ExecRecord:
    attempt: int
    worker_id: str
    pid: int
    started_at: Any
    finished_at: Any


def load_jobs() -> dict[str, JobRecord]:
    rows = query("SELECT id, task_path, status, attempts, errors FROM bourbon_jobs_job")
    return {
        str(job_id): JobRecord(
            path, status, attempts, json.loads(errors) if isinstance(errors, str) else errors
        )
        for job_id, path, status, attempts, errors in rows
    }


def load_executions() -> dict[str, list[ExecRecord]]:
    runs: dict[str, list[ExecRecord]] = collections.defaultdict(list)
    for job_id, *fields in query(
        "SELECT job_id, attempt, worker_id, pid, started_at, finished_at FROM chaosapp_execution ORDER BY id"
    ):
        runs[str(job_id)].append(ExecRecord(*fields))
    return runs


def load_starts() -> set[str]:
    """Ids of the plain jobs whose attempt started at least once (``task_started``: ``mark_start``)."""
    lines = Path(os.environ["CHAOS_STARTS"]).read_text().splitlines()
    return {line.split()[0] for line in lines if line.strip()}
