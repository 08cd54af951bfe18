"""The store for PostgreSQL (through psycopg 3, system check E009): bound statements, NOTIFY, COPY, locks.

Workers LISTEN on :data:`CHANNEL`; an insert that is due at once NOTIFYs it in the
same statement, so inside the caller's transaction the notification is held until
commit and no worker wakes for a row it cannot see yet.

**The claim** (:func:`.statements.claim_sql` with ``FOR UPDATE SKIP LOCKED``):

- PostgreSQL's planner only walks the claim index in order when its statistics say
  many rows are queued. Right after a bulk dispatch, or wherever autovacuum has not
  analyzed the table yet, it estimates a handful and picks a bitmap scan of every
  queued row plus a sort instead: a claim of 32 then costs 15 ms instead of under
  1 ms with 20,000 jobs queued. The claiming connection therefore turns bitmap
  scans off for its session (:func:`prefer_index_walk`); no other connection is touched.
- The claim's transaction commits with ``synchronous_commit`` off (``set_config(...,
  true)`` inside the statement, so for that transaction only, whether it is the
  statement's own or the caller's): the commit does not wait for the WAL flush,
  which took about half a millisecond of an idle worker's pickup here. What that
  risks is small: if the database server crashes within the fraction of a second
  before the WAL reaches the disk, the claim is undone and the job is simply queued
  again, as if it had never been claimed. The next commit that does wait (any
  outcome, any enqueue) flushes the claim with it.
- The statement is bound server-side (:mod:`.pgbound`) and its rows become ``Job``
  objects through ``Model.from_db``, as the ORM does for a plain query.

**Outcomes** travel as one JSON parameter, ``FROM json_to_recordset(%s::json)``
(:func:`.statements.recordset_outcome_sql`), bound server-side: the same statement
text for every batch size, and the only Python work is one ``json.dumps``.
"""

from __future__ import annotations

import functools
import json
import weakref
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import Any

from django.db import connections, models
from django.db.models import Field, JSONField
from django.db.models.fields import AutoFieldMixin

from django_bourbon_jobs.limits import micros, queue_key
from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.store import limit_statements, pgbound, statements
from django_bourbon_jobs.store.portable import PortableStore

CHANNEL = "bourbon_jobs"
"""The NOTIFY channel workers LISTEN on; the payload is the queue name."""

VARYING = ("id", "args", "kwargs")
"""The columns in which the rows of one :meth:`PostgresStore.insert_many` call may differ."""


class PostgresStore(PortableStore):
    def insert(self, job: models.Model, using: str, notify: bool) -> None:
        """INSERT the job, and with ``notify`` NOTIFY its queue in the same statement (one round trip).

        The statement's text is built once per model and its values are bound
        server-side (:mod:`.pgbound`): compiling the INSERT and quoting its two dozen
        values in Python took longer than the round trip itself.
        """
        if not notify:
            super().insert(job, using, notify)
            return
        connection = connections[using]
        fields = type(job)._meta.concrete_fields
        params = [field.get_db_prep_save(field.pre_save(job, True), connection) for field in fields]
        with pgbound.cursor(connection) as cursor:
            cursor.execute(_insert_and_notify_sql(type(job)), [*params, CHANNEL])
        job._state.adding = False
        job._state.db = using

    def insert_many(self, jobs: Sequence[models.Model], using: str) -> None:
        """COPY the rows; call inside a transaction.

        The first row's values are prepared once and every row reuses them but for
        the :data:`VARYING` columns (the rows of one ``dispatch_many`` differ in those
        only). Arguments go as JSON text, which COPY casts to ``jsonb``.
        """
        if not jobs:
            return
        connection = connections[using]
        model = type(jobs[0])
        fields = [f for f in model._meta.concrete_fields if isinstance(f, Field)]
        columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
        template = [_copy_value(f, getattr(jobs[0], f.attname), connection) for f in fields]
        position = {f.attname: n for n, f in enumerate(fields)}
        id_at, args_at, kwargs_at = (position[name] for name in VARYING)
        with connection.cursor() as cursor:
            with cursor.cursor.copy(f"COPY {model._meta.db_table} ({columns}) FROM STDIN") as copy:
                for job in jobs:
                    row = list(template)
                    row[id_at] = job.pk
                    row[args_at] = json.dumps(job.args)  # type: ignore[attr-defined]
                    row[kwargs_at] = json.dumps(job.kwargs)  # type: ignore[attr-defined]
                    copy.write_row(row)

    def notify(self, using: str, queue_name: str) -> None:
        """NOTIFY the queue's workers (held until commit inside a transaction)."""
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, queue_name])

    def lock_idempotency_key(self, using: str, key: str) -> None:
        """A transaction-scoped advisory lock on ``key``."""
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key])

    def _claimed_rows(self, using: str, connection: Any, queue_count: int, params: list[Any]) -> list[Job]:
        """The claim skips rows other claimers hold, walks the index, commits asynchronously (module doc)."""
        prefer_index_walk(connection)
        sql = statements.claim_sql(True, queue_count, async_commit=True)
        with pgbound.cursor(connection) as cursor:
            cursor.execute(sql, params)
            return [_job_from_row(using, row) for row in cursor.fetchall()]

    def _claimed_limited_rows(
        self,
        using: str,
        worker_id: str,
        queues: Collection[str],
        limit: int,
        room: int,
        now: datetime,
        lease_until: datetime,
    ) -> list[Job]:
        """One statement claims limited jobs with the others (:mod:`.limit_statements`)."""
        connection = connections[using]
        prefer_index_walk(connection)
        sql = limit_statements.limited_claim_sql(bool(queues))
        params = limited_claim_params(worker_id, queues, limit, room, now, lease_until)
        with pgbound.cursor(connection) as cursor:
            cursor.execute(sql, params)
            return [_job_from_row(using, row) for row in cursor.fetchall()]

    def _write_outcomes(
        self, using: str, worker_id: str, jobs: Sequence[Job], returning: bool = False
    ) -> Iterator[Any]:
        """The batch as one bound JSON parameter (see the module doc), whatever its size."""
        if not jobs:
            return
        batch = json.dumps([_as_record(job) for job in jobs])
        with pgbound.cursor(connections[using]) as cursor:
            sql = statements.recordset_outcome_sql(returning)
            cursor.execute(sql, [batch, JobStatus.RUNNING.value, worker_id])
            yield cursor

    def insert_rows(self, rows: Sequence[models.Model], using: str) -> None:
        """COPY rows of one model, each with all its own values; call inside a transaction."""
        if not rows:
            return
        connection = connections[using]
        model = type(rows[0])
        fields = [
            f
            for f in model._meta.concrete_fields
            if isinstance(f, Field) and not isinstance(f, AutoFieldMixin)
        ]
        columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
        with connection.cursor() as cursor:
            with cursor.cursor.copy(f"COPY {model._meta.db_table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([_copy_value(f, f.pre_save(row, True), connection) for f in fields])


def limited_claim_params(
    worker_id: str, queues: Collection[str], limit: int, room: int, now: datetime, lease_until: datetime
) -> dict[str, Any]:
    """The named parameters of :func:`.limit_statements.limited_claim_sql`."""
    names = sorted(queues)
    return {
        "now": now,
        "epoch": micros(now),
        "limit": limit,
        "room": room,
        "worker_id": worker_id,
        "lease_until": lease_until,
        "queues": names,
        "queue_keys": [queue_key(name) for name in names],
    }


_walking_connections: weakref.WeakSet[Any] = weakref.WeakSet()


def prefer_index_walk(connection: Any) -> None:
    """Turn off bitmap scans once per PostgreSQL session of ``connection`` (see the module doc).

    Not with Django's connection pool (``OPTIONS["pool"]``): a pooled session goes
    back to the pool with its settings, and could reach other code.
    """
    if connection.settings_dict["OPTIONS"].get("pool"):
        return
    connection.ensure_connection()
    session = connection.connection
    if session in _walking_connections:
        return
    with connection.cursor() as cursor:
        cursor.execute("SET enable_bitmapscan = off")
    _walking_connections.add(session)


def _job_from_row(using: str, row: tuple[Any, ...]) -> Job:
    """Django's connection loads ``jsonb`` as text for JSONField to decode; decode it here the same way."""
    values = list(row)
    for n in statements.JSON_POSITIONS:
        if isinstance(values[n], str):
            values[n] = json.loads(values[n])
    return Job.from_db(using, statements.ATTNAMES, values)


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


def _copy_value(field: Field, value: Any, connection: Any) -> Any:
    """A JSON value as its text (COPY casts it), not a wrapper psycopg would dump again for every row."""
    if isinstance(field, JSONField):
        return None if value is None else json.dumps(value)
    return field.get_db_prep_save(value, connection)


def _notifying(insert_sql: str) -> str:
    return f"WITH j AS ({insert_sql} RETURNING queue_name) SELECT pg_notify(%s, queue_name) FROM j"


@functools.cache
def _insert_and_notify_sql(model: type[models.Model]) -> str:
    meta = model._meta
    columns = ", ".join(f'"{field.column}"' for field in meta.concrete_fields)
    values = ", ".join(["%s"] * len(meta.concrete_fields))
    return _notifying(f'INSERT INTO "{meta.db_table}" ({columns}) VALUES ({values})')
