"""How a job is told in the report: its errors, its executions, the reason it failed.

:func:`describe` turns one job's row and executions into the short story printed under
the table; :func:`example` keeps at most three such stories of each kind on a row;
:func:`error_kind` reduces an error to a reason that can be counted.
"""

from __future__ import annotations

import re
from typing import Any

from .records import ExecRecord, JobRecord
from .rows import Row


def short_class(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def error_kind(error: dict[str, Any]) -> str:
    """An error's class and the first sentence of its message, numbers and ids blanked: a reason to count."""
    message = str(error.get("message", "")).split(". ")[0]
    message = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|\d+", "N", message)
    return f"{short_class(error['exception_class_path'])}: {message[:90]}"


def clock(moment: Any) -> str:
    return moment.strftime("%H:%M:%S.%f")[:-3]


def _error_line(e: dict[str, Any]) -> str:
    return (
        f"attempt {e.get('attempt')} on {e.get('worker_id')} at {str(e.get('at', ''))[11:23]}:"
        f" {short_class(e['exception_class_path'])}"
        f"{'' if e.get('charged', True) else ' (refunded)'}: {str(e.get('message', ''))[:160]}"
    )


def _execution_line(e: ExecRecord) -> str:
    return (
        f"attempt {e.attempt} on {e.worker_id} pid {e.pid}, {clock(e.started_at)}"
        f" to {clock(e.finished_at) if e.finished_at else '(unfinished)'}"
    )


def describe(job_id: str, job: JobRecord | None, executions: list[ExecRecord]) -> dict[str, Any]:
    """One job's story, for the examples printed under the table."""
    if job is None:
        return {"job": job_id, "status": "missing"}
    return {
        "job": job_id,
        "status": job.status,
        "attempts": job.attempts,
        "errors": [_error_line(e) for e in job.errors],
        "executions": [_execution_line(e) for e in executions],
    }


def example(row: Row, kind: str, story: dict[str, Any]) -> None:
    stories = row.examples.setdefault(kind, [])
    if len(stories) < 3:
        stories.append(story)
