"""Write many new job rows at once: ``COPY`` on PostgreSQL, multi-row INSERTs elsewhere.

``COPY ... FROM STDIN`` streams rows without building one giant statement or
parameter list, which is what makes fan-out of tens of thousands of jobs cheap.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connections
from django.db.models import Field

from django_bourbon_jobs import pgbound
from django_bourbon_jobs.models import Job

INSERT_BATCH = 1000
"""Rows per INSERT statement where COPY is not available."""


def insert_jobs(jobs: Sequence[Job], using: str) -> None:
    """Insert ``jobs`` (their ids are set already); call inside a transaction."""
    if not pgbound.available(connections[using]):
        Job.objects.db_manager(using).bulk_create(jobs, batch_size=INSERT_BATCH)
        return
    connection = connections[using]
    fields = [f for f in Job._meta.concrete_fields if isinstance(f, Field)]
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    first = jobs[0] if jobs else None
    template = [
        (getattr(first, f.attname), f.get_db_prep_save(getattr(first, f.attname), connection)) for f in fields
    ]

    def row(job: Job) -> list[object]:
        """Prepare only the values that differ from the first job's (in a batch, mostly id and args)."""
        values = []
        for f, (raw, prepared) in zip(fields, template, strict=True):
            value = getattr(job, f.attname)
            values.append(prepared if value is raw or value == raw else f.get_db_prep_save(value, connection))
        return values

    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {Job._meta.db_table} ({columns}) FROM STDIN") as copy:
            for job in jobs:
                copy.write_row(row(job))
