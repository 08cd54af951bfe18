"""Counting what happened to every job of a scenario, and the bars the counts must meet.

:func:`measure` fills a :class:`~chaoslib.rows.Row` from the job table, the executions the
plain jobs recorded and the attempt starts: jobs lost, stuck, failed (and why), executed
twice, claimed twice, poison outcomes, and how long after the last fault every job was
final. :func:`check_bars` lists the bars a row breaks.
"""

from __future__ import annotations

import collections
from typing import Any

from .config import OPEN
from .records import ExecRecord, JobRecord, load_executions, load_jobs, load_starts
from .rows import Row, Scenario
from .stories import describe, error_kind, example, short_class

BARS = ("lost", "stuck", "failed_not_made_to_fail", "same_claim_twice", "poison_not_failed")


def same_claim_repeats(executions: list[ExecRecord], errors: list[dict[str, Any]]) -> int:
    """Executions beyond one per claim, a claim being (attempt, worker).

    An attempt the worker refunded (its error says ``"charged": false``: the database
    connection broke under it) is claimed again with the same attempt number, possibly by
    the same worker: each such refund accounts for one more execution under those numbers.
    """
    claims = collections.Counter((e.attempt, e.worker_id) for e in executions)
    refunds = collections.Counter(
        (error.get("attempt"), error.get("worker_id")) for error in errors if error.get("charged") is False
    )
    return sum(max(n - 1 - refunds[claim], 0) for claim, n in claims.items())


def _count_executions(row: Row, job_id: str, job: JobRecord, executions: list[ExecRecord]) -> None:
    """One plain job's executions: duplicates, the same claim twice, never executed, stuck."""
    row.executions += len(executions)
    extra = max(len(executions) - 1, 0)
    row.duplicates += extra
    row.duplicates_at_fault += extra if job.errors else 0
    if extra and not job.errors:
        example(row, "executed twice, no fault recorded", describe(job_id, job, executions))
    repeats = same_claim_repeats(executions, job.errors)
    row.same_claim_twice += repeats
    if repeats:
        example(row, "same claim twice", describe(job_id, job, executions))
    row.never_executed += not executions
    if job.status in OPEN:
        example(row, "stuck", describe(job_id, job, executions))


def _count_failure(
    row: Row,
    job_id: str,
    job: JobRecord,
    executions: list[ExecRecord],
    began: set[str],
    reasons: collections.Counter[str],
) -> None:
    """One failed plain job: killed while running (``max_attempts`` 1), or not made to fail."""
    row.failed += 1
    row.failed_never_started += job_id not in began
    killed = job_id in began and short_class(job.errors[-1]["exception_class_path"]) == "WorkerLost"
    if row.plain_max_attempts == 1 and killed:
        row.failed_killed_running += 1
    else:
        reasons[error_kind(job.errors[-1])] += 1
        example(row, "failed not made to fail", describe(job_id, job, executions))


def measure_plain(
    row: Row, jobs: dict[str, JobRecord], runs: dict[str, list[ExecRecord]], ids: list[str]
) -> None:
    errors: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    began = load_starts()
    for job_id in ids:
        job, executions = jobs.get(job_id), runs.get(job_id, [])
        if job is None:
            continue
        errors.update(short_class(e["exception_class_path"]) for e in job.errors)
        _count_executions(row, job_id, job, executions)
        if job.status == "failed":
            _count_failure(row, job_id, job, executions, began, reasons)
    row.failed_not_made_to_fail = row.failed - row.failed_killed_running
    row.plain_errors = dict(errors.most_common())
    row.failed_reasons = dict(reasons.most_common())


def measure_poison(row: Row, jobs: dict[str, JobRecord], dispatched: dict[str, str]) -> None:
    outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for job_id, name in dispatched.items():
        if name.startswith("plain"):
            continue
        job = jobs.get(job_id)
        status = job.status if job else "lost"
        last = short_class(job.errors[-1]["exception_class_path"]) if job and job.errors else ""
        outcomes[name][f"{status}:{last}" if last else status] += 1
        if status != "failed":
            row.poison_not_failed += 1
            example(row, "poison not failed", describe(job_id, job, []))
    row.poison = {name: dict(counts) for name, counts in outcomes.items()}


def measure(scenario: Scenario, limit: float, settled_at: float | None) -> Row:
    """Fill the row from the job table and the executions the jobs recorded."""
    row = scenario.row
    jobs, runs = load_jobs(), load_executions()
    plain_ids = [i for i, name in scenario.dispatched.items() if name.startswith("plain")]
    row.jobs = len(scenario.dispatched)
    row.plain_jobs = len(plain_ids)
    row.poison_jobs = row.jobs - row.plain_jobs
    row.lost = sum(1 for i in scenario.dispatched if i not in jobs)
    row.stuck = sum(1 for i in scenario.dispatched if i in jobs and jobs[i].status in OPEN)
    measure_plain(row, jobs, runs, plain_ids)
    measure_poison(row, jobs, scenario.dispatched)
    row.converge_limit_s = limit
    if settled_at is not None and scenario.fault_end is not None and row.stuck == 0:
        row.converge_s = round(max(settled_at - scenario.fault_end, 0.0), 2)
    return row


def check_bars(row: Row) -> list[str]:
    broken = [f"{name}={getattr(row, name)}" for name in BARS if getattr(row, name)]
    if row.converge_s is None:
        broken.append("did not converge")
    elif row.converge_s > row.converge_limit_s:
        broken.append(f"converge {row.converge_s}s > {row.converge_limit_s}s")
    return broken
