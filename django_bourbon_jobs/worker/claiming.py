"""Fetch-and-lock a batch of due jobs in one statement.

PostgreSQL::

    UPDATE job SET status='running', attempts=attempts+1, worker_id=..., lease_expires_at=...
    WHERE id IN (SELECT id FROM job WHERE status='queued' AND due_at <= now [AND queue_name IN ...]
                 ORDER BY priority DESC, due_at, id LIMIT n FOR UPDATE SKIP LOCKED)
    RETURNING <every column>

The inner SELECT walks the partial index ``bourbon_job_claim`` and skips rows
another worker has locked, so concurrent claimers never wait on each other and
never get the same job. SQLite has one writer at a time and runs the same
statement without the locking clause: the UPDATE itself is atomic.

PostgreSQL's planner only walks that index in order when its statistics say
many rows are queued. Right after a bulk dispatch, or wherever autovacuum has
not analyzed the table yet, it estimates a handful and picks a bitmap scan of
every queued row plus a sort instead: a claim of 32 then costs 15 ms instead of
under 1 ms with 20,000 jobs queued. The claiming connection therefore turns
bitmap scans off for its session (:func:`prefer_index_walk`); no other
connection is touched.

On PostgreSQL the claim's transaction commits with ``synchronous_commit`` off
(``set_config(..., true)`` inside the statement, so for that transaction only,
whether it is the statement's own or the caller's): the commit does not wait for
the WAL flush, which took about half a millisecond of an idle worker's pickup
here. What that risks is small: if the database server crashes within the
fraction of a second before the WAL reaches the disk, the claim is undone and
the job is simply queued again, as if it had never been claimed. The next
commit that does wait (any outcome, any enqueue) flushes the claim with it.

On PostgreSQL with psycopg 3 the statement is bound server-side (``pgbound``)
and its rows become ``Job`` objects through ``Model.from_db``, as the ORM does
for a plain query; elsewhere it goes through Django's raw queries.
"""

from __future__ import annotations

import functools
import json
import weakref
from collections.abc import Collection
from datetime import datetime
from typing import Any

from django.db import connections
from django.db.models import JSONField

from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.store import pgbound

_FIELDS = Job._meta.concrete_fields
_ATTNAMES = [field.attname for field in _FIELDS]
_JSON_POSITIONS = [n for n, field in enumerate(_FIELDS) if isinstance(field, JSONField)]


ASYNC_COMMIT = " AND (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL"
"""PostgreSQL: commit this claim without waiting for its WAL to reach the disk (see the module doc)."""


@functools.cache
def claim_sql(vendor_skips_locked: bool, queue_count: int, postgresql: bool = False) -> str:
    table = Job._meta.db_table
    queue_clause = f" AND queue_name IN ({', '.join(['%s'] * queue_count)})" if queue_count else ""
    lock_clause = " FOR UPDATE SKIP LOCKED" if vendor_skips_locked else ""
    return (
        f"UPDATE {table} SET status = %s, attempts = attempts + 1, attempt_started = %s, worker_id = %s, "
        "lease_expires_at = %s, started_at = COALESCE(started_at, %s), last_attempted_at = %s "
        f"WHERE id IN (SELECT id FROM {table} WHERE status = %s AND due_at <= %s{queue_clause} "
        f"ORDER BY priority DESC, due_at, id LIMIT %s{lock_clause})"
        f"{ASYNC_COMMIT if postgresql else ''} "
        f"RETURNING {', '.join(str(field.column) for field in _FIELDS)}"
    )


_walking_connections: weakref.WeakSet[Any] = weakref.WeakSet()


def prefer_index_walk(connection: Any) -> None:
    """Turn off bitmap scans once per PostgreSQL session of ``connection`` (see the module doc).

    Not with Django's connection pool (``OPTIONS["pool"]``): a pooled session goes
    back to the pool with its settings, and could reach other code.
    """
    if connection.vendor != "postgresql" or connection.settings_dict["OPTIONS"].get("pool"):
        return
    connection.ensure_connection()
    session = connection.connection
    if session in _walking_connections:
        return
    with connection.cursor() as cursor:
        cursor.execute("SET enable_bitmapscan = off")
    _walking_connections.add(session)


def claim(
    *,
    using: str,
    worker_id: str,
    queues: Collection[str],
    limit: int,
    now: datetime,
    lease_until: datetime,
) -> list[Job]:
    """Claim up to ``limit`` due jobs for ``worker_id``, highest priority, then oldest, first."""
    connection = connections[using]
    prefer_index_walk(connection)
    adapt = connection.ops.adapt_datetimefield_value
    sql = claim_sql(
        connection.features.has_select_for_update_skip_locked, len(queues), connection.vendor == "postgresql"
    )
    params = [
        JobStatus.RUNNING.value,
        False,
        worker_id,
        adapt(lease_until),
        adapt(now),
        adapt(now),
        JobStatus.QUEUED.value,
        adapt(now),
        *sorted(queues),
        limit,
    ]
    if pgbound.available(connection):
        with pgbound.cursor(connection) as cursor:
            cursor.execute(sql, params)
            jobs = [_job_from_row(using, row) for row in cursor.fetchall()]
    else:
        jobs = list(Job.objects.db_manager(using).raw(sql, params))
    jobs.sort(key=lambda job: (-job.priority, job.due_at, job.id))
    return jobs


def extend_leases(*, using: str, worker_id: str, until: datetime, started: Collection[Any] = ()) -> list[Any]:
    """Renew every lease ``worker_id`` holds (the heartbeat); returns the ids it still holds.

    ``started`` are the held jobs whose code has started: they are marked
    ``attempt_started``, so a rescuer that finds their lease run out charges
    the attempt (and refunds it to the others). A prefetched job missing from
    the answer was rescued while its worker was frozen: the worker must not
    start it.
    """
    table = Job._meta.db_table
    connection = connections[using]
    adapt = connection.ops.adapt_datetimefield_value
    mark = ""
    ids = [Job._meta.pk.get_db_prep_value(pk, connection) for pk in started]
    if ids:
        mark = f", attempt_started = (attempt_started OR id IN ({', '.join(['%s'] * len(ids))}))"
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET lease_expires_at = %s{mark} "
            "WHERE status = %s AND worker_id = %s RETURNING id",
            [adapt(until), *ids, JobStatus.RUNNING.value, worker_id],
        )
        return [Job._meta.pk.to_python(row[0]) for row in cursor.fetchall()]


def _job_from_row(using: str, row: tuple[Any, ...]) -> Job:
    """Django's connection loads ``jsonb`` as text for JSONField to decode; decode it here the same way."""
    values = list(row)
    for n in _JSON_POSITIONS:
        if isinstance(values[n], str):
            values[n] = json.loads(values[n])
    return Job.from_db(using, _ATTNAMES, values)
