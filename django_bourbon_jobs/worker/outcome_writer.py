"""The flush duty: write the pool's finished attempts in one statement, then announce them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import InterfaceError, OperationalError

from django_bourbon_jobs import circuits, step_changes
from django_bourbon_jobs.events import publish
from django_bourbon_jobs.exceptions import OutcomeNotStored
from django_bourbon_jobs.limits import CircuitChange
from django_bourbon_jobs.models import Job
from django_bourbon_jobs.serialization import error_record, storable
from django_bourbon_jobs.store.portable import PortableStore
from django_bourbon_jobs.store.steps import StepChanges
from django_bourbon_jobs.worker.announce import announce_outcome
from django_bourbon_jobs.worker.pool import ExecutorPool

logger = logging.getLogger("django_bourbon_jobs.worker")

OUTCOME_TRIES = 3
"""Writes of one job's outcome that may fail (the rest of its batch written) before it is given up."""
TRANSIENT_ERRORS = (OperationalError, InterfaceError)
"""Errors of the connection, not of a row: the whole write is tried again once the database answers."""


@dataclass
class OutcomeWriter:
    """Each :meth:`run_once` writes what finished since the last one; the main thread's only outcome writer.

    A row the database refuses does not hold up the rest of its batch: the others
    are written one by one, and a job whose outcome is refused ``OUTCOME_TRIES``
    times is failed with an :class:`OutcomeNotStored` error that says why.
    """

    store: PortableStore
    using: str
    worker_id: str
    pool: ExecutorPool
    now: Callable[[], datetime]
    write_failures: dict[Any, int] = field(default_factory=dict)
    written: int = 0
    """Outcomes settled so far (for ``max_jobs``)."""
    steps_changed: list[StepChanges] = field(default_factory=list)
    """What writing workflow steps' outcomes released or cancelled, to announce after the batch."""

    def run_once(self) -> int:
        """Returns the attempts settled. A connection error propagates with the batch kept for next time."""
        done = self.pool.take_finished()
        if not done:
            return 0
        try:
            settled = self._store(done)
        except BaseException:
            self.pool.put_back_finished(done)
            raise
        if len(settled) < len(done):
            self.pool.put_back_finished([job for job in done if job not in settled])
        self.pool.forget(settled)
        if self.write_failures:
            for job in settled:
                self.write_failures.pop(job.id, None)
        self.written += len(settled)
        publish.publish_job_events(settled)
        for job in settled:
            announce_outcome(
                job,
                started=self.pool.executor.started.pop(job.pk, None),
                exception=self.pool.executor.raised.pop(job.pk, None),
            )
        while self.steps_changed:
            step_changes.announce(self.steps_changed.pop(0), self.using)
        return len(settled)

    def _store(self, done: list[Job]) -> list[Job]:
        """Write the batch; if a row spoils it, write the others one by one. Returns the jobs settled."""
        refused = self._record(done)
        if refused is None:
            return done
        logger.warning(
            "worker %s: writing %d outcomes failed (%s); one by one", self.worker_id, len(done), refused
        )
        return [job for job in done if self._store_one(job)]

    def _record(self, jobs: list[Job]) -> Exception | None:
        """Write outcomes; the error if the database refused them (a connection error propagates)."""
        changes: list[CircuitChange] = []
        try:
            with_steps = any(job.workflow_id is not None for job in jobs)
            if any(job.limit_key for job in jobs):
                written, changes = self.store.record_limited_outcomes(
                    self.using, self.worker_id, jobs, self.now(), with_steps
                )
                if with_steps:
                    self.steps_changed.append(written)
            elif with_steps:
                self.steps_changed.append(
                    self.store.record_step_outcomes(self.using, self.worker_id, jobs, self.now())
                )
            else:
                self.store.record_outcomes(self.using, self.worker_id, jobs)
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001  (a row the database refuses must not stop the worker)
            return exc
        for change in changes:
            circuits.announce(change)
        return None

    def _store_one(self, job: Job) -> bool:
        """Write one outcome; after ``OUTCOME_TRIES`` failures, settle the job as failed instead."""
        refused = self._record([job])
        if refused is None:
            return True
        tries = self.write_failures[job.id] = self.write_failures.get(job.id, 0) + 1
        if tries < OUTCOME_TRIES:
            return False
        return self._give_up(job, refused)

    def _give_up(self, job: Job, exc: Exception) -> bool:
        """Replace an outcome the database keeps refusing with a failure that says why."""
        logger.error("worker %s: the outcome of job %s cannot be stored: %s", self.worker_id, job.pk, exc)
        now = self.now()
        failure = OutcomeNotStored(
            f"The attempt's outcome could not be stored ({type(exc).__name__}: {exc})."
        )
        self.pool.executor.raised[job.pk] = failure
        error = error_record(failure, worker_id=self.worker_id, attempt=job.attempts, at=now)
        job.errors = storable(job.errors)
        job.return_value = None
        job.progress = None
        job.mark_failed(error, now)
        again = self._record([job])
        if again is not None:  # its lease will run out and the rescuer settles it
            logger.error("worker %s: giving up job %s to the rescuer: %s", self.worker_id, job.pk, again)
        return True
