"""The store for PostgreSQL (through psycopg 3, system check E009): bound statements, NOTIFY, COPY, locks.

Workers LISTEN on :data:`CHANNEL`; an insert that is due at once NOTIFYs it in the
same statement, so inside the caller's transaction the notification is held until
commit and no worker wakes for a row it cannot see yet.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from django.db import connections, models
from django.db.models import Field, JSONField

from django_bourbon_jobs.store import pgbound
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
