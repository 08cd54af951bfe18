"""The store for any database Django supports: the ORM and portable SQL (SQLite in practice)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import connections, models, transaction
from django.db.models import Field, QuerySet

from django_bourbon_jobs.limits import CircuitChange, LimitSpec
from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.store import limits as limit_store
from django_bourbon_jobs.store import statements, steps

INSERT_BATCH = 1000
"""Rows per INSERT statement in :meth:`PortableStore.insert_many`."""
OUTCOME_CHUNK = 500
"""Outcomes per UPDATE in :meth:`PortableStore.record_outcomes` (SQLite limits a statement's parameters)."""


class PortableStore:
    """Inserts through the ORM; no notifications (workers poll, or listen to Redis), no advisory locks.

    The worker's side (:meth:`claim`, :meth:`extend_leases`, :meth:`record_outcomes`,
    :meth:`release`) runs the statements of :mod:`.statements` through Django's cursors.
    """

    def insert(self, job: models.Model, using: str, notify: bool) -> None:
        """Insert one job row; with ``notify``, tell the queue's listening workers once it commits."""
        job.save(force_insert=True, using=using)

    def insert_many(self, jobs: Sequence[models.Model], using: str) -> None:
        """Insert many rows of one model; call inside a transaction."""
        if jobs:
            type(jobs[0])._default_manager.db_manager(using).bulk_create(jobs, batch_size=INSERT_BATCH)

    def notify(self, using: str, queue_name: str) -> None:
        """Wake the queue's listening workers once the transaction commits (nothing here)."""

    def lock_idempotency_key(self, using: str, key: str) -> None:
        """Serialise dispatches that share ``key`` until the transaction ends.

        Nothing here: on SQLite the write lock does it (``transaction_mode = "IMMEDIATE"``).
        """

    def claim(
        self,
        *,
        using: str,
        worker_id: str,
        queues: Collection[str],
        limit: int,
        now: datetime,
        lease_until: datetime,
        limited: bool = False,
        limited_room: int = 0,
    ) -> list[Job]:
        """Claim up to ``limit`` due jobs for ``worker_id``: highest priority, then oldest, first.

        With ``limited`` (while ``Limit`` rows exist), limited jobs too: at most
        ``limited_room`` of them, each within its limits (docs/flow-control.md).
        """
        if limited:
            return in_claim_order(
                self._claimed_limited_rows(using, worker_id, queues, limit, limited_room, now, lease_until)
            )
        connection = connections[using]
        params = claim_params(connection, worker_id, queues, limit, now, lease_until)
        return in_claim_order(self._claimed_rows(using, connection, len(queues), params))

    def _claimed_rows(self, using: str, connection: Any, queue_count: int, params: list[Any]) -> list[Job]:
        """Run the claim statement; its rows as ``Job`` objects."""
        sql = statements.claim_sql(connection.features.has_select_for_update_skip_locked, queue_count)
        return list(Job.objects.db_manager(using).raw(sql, params))

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
        """The claim of unlimited and limited jobs together (one write transaction here)."""
        return limit_store.claim_limited(
            using=using,
            worker_id=worker_id,
            queues=queues,
            limit=limit,
            room_left=room,
            now=now,
            lease_until=lease_until,
        )

    def extend_leases(
        self, *, using: str, worker_id: str, until: datetime, started: Collection[Any] = ()
    ) -> list[Any]:
        """Renew every lease ``worker_id`` holds (the heartbeat); returns the ids it still holds.

        ``started`` are the held jobs whose code has started: they are marked
        ``attempt_started``, so a rescuer that finds their lease run out charges
        the attempt (and refunds it to the others). A prefetched job missing from
        the answer was rescued while its worker was frozen: the worker must not
        start it.
        """
        connection = connections[using]
        ids = [Job._meta.pk.get_db_prep_value(pk, connection) for pk in started]
        until_value = connection.ops.adapt_datetimefield_value(until)
        with connection.cursor() as cursor:
            cursor.execute(
                statements.extend_leases_sql(len(ids)),
                [until_value, *ids, JobStatus.RUNNING.value, worker_id],
            )
            return [Job._meta.pk.to_python(row[0]) for row in cursor.fetchall()]

    def record_outcomes(self, using: str, worker_id: str, jobs: Sequence[Job]) -> int:
        """Store the outcome each job carries where ``worker_id`` still holds it; returns rows written."""
        return sum(cursor.rowcount for cursor in self._write_outcomes(using, worker_id, jobs))

    def record_step_outcomes(
        self, using: str, worker_id: str, jobs: Sequence[Job], now: datetime
    ) -> steps.StepChanges:
        """:meth:`record_outcomes` for a batch holding workflow steps, in one transaction with what follows.

        The steps that finished release (or cancel) their dependents and count in their
        workflows' progress before the transaction commits (see :mod:`.steps`).
        """
        with transaction.atomic(using=using):
            written = [
                row
                for cursor in self._write_outcomes(using, worker_id, jobs, True)
                for row in cursor.fetchall()
            ]
            return steps.settle_outcomes(using, jobs, written, now, self.notify)

    def _write_outcomes(
        self, using: str, worker_id: str, jobs: Sequence[Job], returning: bool = False
    ) -> Iterator[Any]:
        """Run the outcome statements; yields each one's cursor, to read its count or its rows."""
        connection = connections[using]
        fields = [
            f for name in statements.OUTCOME_FIELDS if isinstance(f := Job._meta.get_field(name), Field)
        ]
        for start in range(0, len(jobs), OUTCOME_CHUNK):
            chunk = jobs[start : start + OUTCOME_CHUNK]
            params: list[Any] = []
            for job in chunk:
                params.extend(f.get_db_prep_save(getattr(job, f.attname), connection) for f in fields)
            params += [JobStatus.RUNNING.value, worker_id]
            with connection.cursor() as cursor:
                cursor.execute(statements.values_outcome_sql(len(chunk), returning), params)
                yield cursor

    def insert_rows(self, rows: Sequence[models.Model], using: str) -> None:
        """Insert rows of one model, each with all its own values (a workflow's jobs and steps)."""
        self.insert_many(rows, using)

    def record_limited_outcomes(
        self, using: str, worker_id: str, jobs: Sequence[Job], now: datetime, with_steps: bool = False
    ) -> tuple[Any, list[CircuitChange]]:
        """:meth:`record_outcomes` (:meth:`record_step_outcomes` ``with_steps``) for a batch with
        limited jobs, whose circuits count the outcomes. Returns what that wrote, and the changes."""

        def write(batch: Sequence[Job]) -> Any:
            if with_steps:
                return self.record_step_outcomes(using, worker_id, batch, now)
            return self.record_outcomes(using, worker_id, batch)

        return limit_store.record_limited_outcomes(write, using, worker_id, jobs, now)

    def ensure_limits(self, using: str, specs: Iterable[LimitSpec]) -> None:
        """Create or update the ``Limit`` rows of ``specs`` (an enqueue of a limited task does)."""
        limit_store.ensure_limits(using, specs)

    def sync_queue_limits(self, using: str, specs: Mapping[str, LimitSpec]) -> None:
        """Make the queue rows match ``QUEUE_LIMITS`` (workers do, as they start)."""
        limit_store.sync_queue_limits(using, specs)

    def limits_exist(self, using: str) -> bool:
        """Whether any ``Limit`` row exists (else the plain claim serves)."""
        return limit_store.limits_exist(using)

    def next_limit_opening(self, using: str, queues: Collection[str], now: datetime) -> datetime | None:
        """When a rate window or an open circuit next lets a waiting job start; ``None`` if none waits so."""
        return limit_store.next_opening(using, queues, now)

    def close_circuit(self, using: str, key: str, reason: str) -> CircuitChange | None:
        """Close an open circuit by hand; ``None`` if it is not open."""
        return limit_store.close_circuit(using, key, reason)

    def release(self, using: str, worker_id: str, job_ids: Collection[Any]) -> int:
        """Put back jobs ``worker_id`` claimed but never started; the claim does not count as an attempt."""
        jobs = Job.objects.db_manager(using).held_by(worker_id).filter(pk__in=list(job_ids))
        with transaction.atomic(using=using):
            self.lock_limits_of(using, jobs)
            return jobs.update(
                status=JobStatus.QUEUED,
                attempts=models.F("attempts") - 1,
                worker_id="",
                lease_expires_at=None,
            )

    def lock_limits_of(self, using: str, jobs: QuerySet[Job]) -> None:
        """Lock the ``Limit`` rows of the limited jobs among ``jobs`` in key order (see :mod:`.limits`)."""
        limit_store.lock_rows_of(using, jobs)


def claim_params(
    connection: Any, worker_id: str, queues: Collection[str], limit: int, now: datetime, lease_until: datetime
) -> list[Any]:
    """The parameters of :func:`.statements.claim_sql`, in its order."""
    adapt = connection.ops.adapt_datetimefield_value
    return [
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


def in_claim_order(jobs: list[Job]) -> list[Job]:
    """``RETURNING`` gives rows in no particular order: start them highest priority, then oldest, first."""
    jobs.sort(key=lambda job: (-job.priority, job.due_at, job.id))
    return jobs
