"""Write many new job rows at once: ``COPY`` on PostgreSQL, multi-row INSERTs elsewhere.

``COPY ... FROM STDIN`` streams rows without building one giant statement or
parameter list, which is what makes fan-out of tens of thousands of jobs cheap.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.db import connections
from django.db.models import Field, JSONField
from django.db.models.base import ModelState

from django_bourbon_jobs import pgbound
from django_bourbon_jobs.ids import uuid7s
from django_bourbon_jobs.models import Job

INSERT_BATCH = 1000
"""Rows per INSERT statement where COPY is not available."""


VARYING = ("id", "args", "kwargs")
"""The columns in which the jobs of one ``dispatch_many`` call differ."""


@contextmanager
def collector_paused() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector while a bulk dispatch builds its objects.

    Building tens of thousands of jobs and results, none of them in a reference
    cycle, set off collections that scanned every live object again and again:
    about a third of ``dispatch_many``'s time. The collector is process-wide, so it
    is paused only for the call and resumed after it (if it was on), whatever
    happens; whatever became garbage meanwhile is collected then.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def clone_jobs(template: Job, calls: Iterable[tuple[Any, Any]]) -> list[Job]:
    """One unsaved Job per ``(args, kwargs)``, equal to ``template`` but for a fresh id and those.

    ``Model.__init__`` resolves every field and default one by one, which cost
    more per job than COPY does; a copy of the template's attributes does not.
    """
    base = {name: value for name, value in template.__dict__.items() if name != "_state"}
    jobs = []
    for args, kwargs in calls:
        job = Job.__new__(Job)
        job.__dict__.update(base)
        job._state = ModelState()
        job.args, job.kwargs = args, kwargs
        jobs.append(job)
    for job, job_id in zip(jobs, uuid7s(len(jobs)), strict=True):
        job.id = job_id
    return jobs


def _copy_value(field: Field, value: Any, connection: Any) -> Any:
    """A JSON value as its text (COPY casts it), not a wrapper psycopg would dump again for every row."""
    if isinstance(field, JSONField):
        return None if value is None else json.dumps(value)
    return field.get_db_prep_save(value, connection)


def insert_jobs(jobs: Sequence[Job], using: str) -> None:
    """Insert ``jobs`` made by :func:`clone_jobs`; call inside a transaction.

    On PostgreSQL the first job's values are prepared once and every row reuses
    them but for the :data:`VARYING` columns, which is why the jobs must differ
    in those only. Arguments go as JSON text, which COPY casts to ``jsonb``.
    """
    connection = connections[using]
    if not pgbound.available(connection) or not jobs:
        Job.objects.db_manager(using).bulk_create(jobs, batch_size=INSERT_BATCH)
        return
    fields = [f for f in Job._meta.concrete_fields if isinstance(f, Field)]
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    template = [_copy_value(f, getattr(jobs[0], f.attname), connection) for f in fields]
    position = {f.attname: n for n, f in enumerate(fields)}
    id_at, args_at, kwargs_at = (position[name] for name in VARYING)
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {Job._meta.db_table} ({columns}) FROM STDIN") as copy:
            for job in jobs:
                row = list(template)
                row[id_at] = job.id
                row[args_at], row[kwargs_at] = json.dumps(job.args), json.dumps(job.kwargs)
                copy.write_row(row)
