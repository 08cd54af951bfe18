"""Write a batch of finished attempts in one statement.

::

    UPDATE job SET status = v.status, ... , lease_expires_at = NULL
    FROM (VALUES (...), (...)) AS v(id, status, return_value, errors, due_at, finished_at)
    WHERE job.id = v.id AND job.status = 'running' AND job.worker_id = %s

The ``worker_id`` guard means an outcome is never written over a job another
worker has claimed since (after a rescue): that attempt was already settled.
Django's ``bulk_update`` would do the same with one ``CASE`` per column and
row, which costs more to build in Python than the jobs cost to run.

On PostgreSQL with psycopg 3 the batch travels as one JSON parameter instead,
``FROM json_to_recordset(%s::json) AS v(id uuid, status text, ...)``, bound
server-side (``pgbound``): the same statement text for every batch size, and
the only Python work is one ``json.dumps``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from django.db import connections
from django.db.models import Field

from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.store import pgbound

VALUE_FIELDS = ("id", "status", "attempts", "return_value", "errors", "due_at", "finished_at", "progress")
CHUNK = 500

_POSTGRES_CASTS = {
    "id": "::uuid",
    "attempts": "::integer",
    "return_value": "::jsonb",
    "errors": "::jsonb",
    "due_at": "::timestamptz",
    "finished_at": "::timestamptz",
    "progress": "::jsonb",
}


def _values_table(vendor: str, rows: int) -> str:
    """The batch as a derived table ``v``; SQLite names VALUES columns column1..N."""
    row = "(" + ", ".join(["%s"] * len(VALUE_FIELDS)) + ")"
    values = f"VALUES {', '.join([row] * rows)}"
    if vendor == "postgresql":
        return f"({values}) AS v({', '.join(VALUE_FIELDS)})"
    columns = ", ".join(f"column{n} AS {name}" for n, name in enumerate(VALUE_FIELDS, start=1))
    return f"(SELECT {columns} FROM ({values})) AS v"


def outcome_sql(vendor: str, rows: int) -> str:
    table = Job._meta.db_table
    casts = _POSTGRES_CASTS if vendor == "postgresql" else {}
    assignments = ", ".join(f"{name} = v.{name}{casts.get(name, '')}" for name in VALUE_FIELDS[1:])
    return (
        f"UPDATE {table} SET {assignments}, lease_expires_at = NULL "
        f"FROM {_values_table(vendor, rows)} WHERE {table}.id = v.id{casts.get('id', '')} "
        f"AND {table}.status = %s AND {table}.worker_id = %s"
    )


_RECORD_TYPES = {
    "id": "uuid",
    "status": "text",
    "attempts": "integer",
    "return_value": "jsonb",
    "errors": "jsonb",
    "due_at": "timestamptz",
    "finished_at": "timestamptz",
    "progress": "jsonb",
}


@functools.cache
def recordset_sql() -> str:
    """PostgreSQL: the batch as one JSON array of objects, so one statement text fits every batch."""
    table = Job._meta.db_table
    columns = ", ".join(f"{name} {_RECORD_TYPES[name]}" for name in VALUE_FIELDS)
    assignments = ", ".join(f"{name} = v.{name}" for name in VALUE_FIELDS[1:])
    return (
        f"UPDATE {table} SET {assignments}, lease_expires_at = NULL "
        f"FROM json_to_recordset(%s::json) AS v({columns}) "
        f"WHERE {table}.id = v.id AND {table}.status = %s AND {table}.worker_id = %s"
    )


def _as_record(job: Job) -> dict[str, Any]:
    """A JSON null lands as SQL NULL, which is how JSONField stores ``None``."""
    return {
        "id": str(job.id),
        "status": job.status,
        "attempts": job.attempts,
        "return_value": job.return_value,
        "errors": job.errors,
        "due_at": job.due_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "progress": job.progress,
    }


def _record_as_json(connection: Any, worker_id: str, jobs: Sequence[Job]) -> int:
    batch = json.dumps([_as_record(job) for job in jobs])
    with pgbound.cursor(connection) as cursor:
        cursor.execute(recordset_sql(), [batch, JobStatus.RUNNING.value, worker_id])
        return int(cursor.rowcount)


def record(using: str, worker_id: str, jobs: Sequence[Job]) -> int:
    """Store the outcome each job carries in memory; returns the rows written."""
    connection = connections[using]
    if pgbound.available(connection):
        return _record_as_json(connection, worker_id, jobs) if jobs else 0
    fields = [field for name in VALUE_FIELDS if isinstance(field := Job._meta.get_field(name), Field)]
    written = 0
    for start in range(0, len(jobs), CHUNK):
        chunk = jobs[start : start + CHUNK]
        params: list[Any] = []
        for job in chunk:
            params.extend(f.get_db_prep_save(getattr(job, f.attname), connection) for f in fields)
        params += [JobStatus.RUNNING.value, worker_id]
        with connection.cursor() as cursor:
            cursor.execute(outcome_sql(connection.vendor, len(chunk)), params)
            written += cursor.rowcount
    return written
