"""The worker's SQL, as text: the claim, the lease renewal and the batched outcome write.

The stores (:mod:`.portable`, :mod:`.postgres`) choose which of these to run and
how to bind them; this module only builds statements, once each (``functools.cache``).

**The claim** fetches and locks a batch of due jobs in one statement::

    UPDATE job SET status='running', attempts=attempts+1, worker_id=..., lease_expires_at=...
    WHERE id IN (SELECT id FROM job WHERE status='queued' AND limit_key='' AND due_at <= now
                 [AND queue_name IN ...] ORDER BY priority DESC, due_at, id LIMIT n
                 FOR UPDATE SKIP LOCKED)
    RETURNING <every column>

The inner SELECT walks the partial index ``bourbon_job_claim`` and, on PostgreSQL,
skips rows another worker has locked, so concurrent claimers never wait on each
other and never get the same job. SQLite has one writer at a time and runs the same
statement without the locking clause: the UPDATE itself is atomic. Jobs held by a
limit (``limit_key <> ''``) are left to the limited claim (:mod:`.limit_statements`),
which runs instead of this one while limits exist.

**An outcome batch** is written in one statement::

    UPDATE job SET status = v.status, ... , lease_expires_at = NULL
    FROM <the batch as a table v>
    WHERE job.id = v.id AND job.status = 'running' AND job.worker_id = %s

The ``worker_id`` guard means an outcome is never written over a job another
worker has claimed since (after a rescue): that attempt was already settled.
Django's ``bulk_update`` would do the same with one ``CASE`` per column and row,
which costs more to build in Python than the jobs cost to run.
"""

from __future__ import annotations

import functools

from django.db.models import JSONField

from django_bourbon_jobs.models import Job, StepDependency, Workflow, WorkflowStep

FIELDS = Job._meta.concrete_fields
ATTNAMES = [field.attname for field in FIELDS]
JSON_POSITIONS = [n for n, field in enumerate(FIELDS) if isinstance(field, JSONField)]

ASYNC_COMMIT = " AND (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL"
"""PostgreSQL: commit this claim without waiting for its WAL to reach the disk (see :mod:`.postgres`)."""

OUTCOME_TYPES = {
    "id": "uuid",
    "status": "text",
    "attempts": "integer",
    "return_value": "jsonb",
    "errors": "jsonb",
    "due_at": "timestamptz",
    "finished_at": "timestamptz",
    "progress": "jsonb",
}
"""The columns an outcome batch writes, in the order the batch carries them, with their PostgreSQL types."""
OUTCOME_FIELDS = tuple(OUTCOME_TYPES)


def _table() -> str:
    return str(Job._meta.db_table)


@functools.cache
def claim_sql(skip_locked: bool, queue_count: int, async_commit: bool = False) -> str:
    """Parameters: running, False, worker id, lease end, now (started_at), now (last attempted),
    queued, now (due), the queue names, the limit."""
    table = _table()
    queue_clause = f" AND queue_name IN ({', '.join(['%s'] * queue_count)})" if queue_count else ""
    lock_clause = " FOR UPDATE SKIP LOCKED" if skip_locked else ""
    return (
        f"UPDATE {table} SET status = %s, attempts = attempts + 1, attempt_started = %s, worker_id = %s, "
        "lease_expires_at = %s, started_at = COALESCE(started_at, %s), last_attempted_at = %s "
        f"WHERE id IN (SELECT id FROM {table} WHERE status = %s AND limit_key = '' "
        f"AND due_at <= %s{queue_clause} "
        f"ORDER BY priority DESC, due_at, id LIMIT %s{lock_clause})"
        f"{ASYNC_COMMIT if async_commit else ''} "
        f"RETURNING {', '.join(str(field.column) for field in FIELDS)}"
    )


def extend_leases_sql(started: int) -> str:
    """Parameters: the lease end, ``started`` job ids to mark started, running, the worker id."""
    mark = ""
    if started:
        mark = f", attempt_started = (attempt_started OR id IN ({', '.join(['%s'] * started)}))"
    return (
        f"UPDATE {_table()} SET lease_expires_at = %s{mark} WHERE status = %s AND worker_id = %s RETURNING id"
    )


@functools.cache
def values_outcome_sql(rows: int, returning: bool = False) -> str:
    """The batch as ``VALUES`` rows (portable: SQLite names their columns column1..N).

    ``returning``: the rows written give back their ``id, status`` (for a batch with workflow steps).
    """
    table = _table()
    row = "(" + ", ".join(["%s"] * len(OUTCOME_FIELDS)) + ")"
    values = f"VALUES {', '.join([row] * rows)}"
    columns = ", ".join(f"column{n} AS {name}" for n, name in enumerate(OUTCOME_FIELDS, start=1))
    assignments = ", ".join(f"{name} = v.{name}" for name in OUTCOME_FIELDS[1:])
    return (
        f"UPDATE {table} SET {assignments}, lease_expires_at = NULL "
        f"FROM (SELECT {columns} FROM ({values})) AS v WHERE {table}.id = v.id "
        f"AND {table}.status = %s AND {table}.worker_id = %s{_returning(returning)}"
    )


@functools.cache
def recordset_outcome_sql(returning: bool = False) -> str:
    """PostgreSQL: the batch as one JSON array of objects, so one statement text fits every batch."""
    table = _table()
    columns = ", ".join(f"{name} {OUTCOME_TYPES[name]}" for name in OUTCOME_FIELDS)
    assignments = ", ".join(f"{name} = v.{name}" for name in OUTCOME_FIELDS[1:])
    return (
        f"UPDATE {table} SET {assignments}, lease_expires_at = NULL "
        f"FROM json_to_recordset(%s::json) AS v({columns}) "
        f"WHERE {table}.id = v.id AND {table}.status = %s AND {table}.worker_id = %s{_returning(returning)}"
    )


def _returning(returning: bool) -> str:
    return f" RETURNING {_table()}.id, {_table()}.status" if returning else ""


# Workflow steps (:mod:`.steps`): the two statements every outcome batch with steps runs.


def count_finished_sql() -> str:
    """Add finished (and failed) steps to a workflow's counts, taking its row lock.

    Parameters: steps finished, steps failed, the workflow's id. Gives back ``id, status,
    step_count, steps_finished, steps_failed, finished_at`` (the last as the database has it:
    only whether it is NULL counts).
    """
    return (
        f"UPDATE {Workflow._meta.db_table} SET steps_finished = steps_finished + %s, "
        "steps_failed = steps_failed + %s WHERE id = %s "
        "RETURNING id, status, step_count, steps_finished, steps_failed, finished_at"
    )


@functools.cache
def count_down_sql(finished: int) -> str:
    """Count down, by its edges from ``finished`` steps that succeeded, every step that waits for them.

    Parameters: the ids of the steps that succeeded. Gives back ``job_id, waiting_for, workflow_id``
    of each step counted down.
    """
    steps, edges = WorkflowStep._meta.db_table, StepDependency._meta.db_table
    placeholders = ", ".join(["%s"] * finished)
    return (
        f"UPDATE {steps} SET waiting_for = {steps}.waiting_for - d.n "
        f"FROM (SELECT step_id, COUNT(*) AS n FROM {edges} WHERE after_id IN ({placeholders}) "
        f"GROUP BY step_id) AS d WHERE {steps}.job_id = d.step_id "
        f"RETURNING {steps}.job_id, {steps}.waiting_for, {steps}.workflow_id"
    )
