"""Firing schedules: the supervisor's :class:`PeriodicFirer`, and :func:`fire`, which enqueues one run.

Each scheduled time fires at most once, however many supervisors run on however many
hosts: a run inserts its :class:`~django_bourbon_jobs.models.PeriodicRun` row and its job
in one transaction, and the unique constraint on (schedule, scheduled time) makes a second
supervisor's insert fail, so it enqueues nothing. Nothing else is coordinated: each
supervisor reads the schedules, works out what is due, and tries.

A time reached more than ``PERIODIC_GRACE`` seconds late counts as missed (the supervisors
were down): ``missed="skip"`` runs none of them, ``"run_latest"`` runs the most recent once.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q, Subquery
from django.tasks import Task

from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.models import MissedPolicy, PeriodicRun, PeriodicSchedule
from django_bourbon_jobs.periodic.definitions import load_task
from django_bourbon_jobs.periodic.sync import sync_settings_schedules
from django_bourbon_jobs.periodic.timing import Timing, timing_for

logger = logging.getLogger("django_bourbon_jobs.periodic")

LONGEST_WAIT = 1.0
"""Seconds between two looks at the schedules at most, so an operator's edit is seen within a second."""
SHORTEST_WAIT = 0.005
CATCH_UP_PER_PASS = 100
"""Due times one pass fires per schedule at most; the rest wait for the next pass."""
RUN_HISTORY = timedelta(days=7)
"""How long ``PeriodicRun`` rows are kept (a time older than ``PERIODIC_GRACE`` never fires again)."""
PRUNE_EVERY = timedelta(minutes=10)
TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class Plan:
    """What one pass does for one schedule."""

    fire: list[datetime]
    """The scheduled times to enqueue, oldest first."""
    cursor: datetime
    """The next time to wait for (after the pass, the schedule's ``next_run_at``)."""
    missed: tuple[datetime, datetime] | None = None
    """The first and last times reached too late, if any."""


def plan_runs(timing: Timing, cursor: datetime, now: datetime, grace: timedelta, missed: str) -> Plan:
    """Times due at ``now`` from ``cursor``: those within ``grace``, and by ``missed`` an older one."""
    if cursor > now:
        return Plan([], cursor)
    horizon = now - grace
    fire: list[datetime] = []
    missed_span = None
    latest_missed = timing.latest_at_or_before(horizon - TICK) if cursor < horizon else None
    if latest_missed is not None and latest_missed >= cursor:
        missed_span = (cursor, latest_missed)
        if missed == MissedPolicy.RUN_LATEST:
            fire.append(latest_missed)
    due = timing.next_after(max(cursor, horizon) - TICK)
    while due <= now and len(fire) < CATCH_UP_PER_PASS:
        fire.append(due)
        due = timing.next_after(due)
    return Plan(fire, due, missed_span)


def timing_of(schedule: PeriodicSchedule) -> Timing:
    return timing_for(schedule.cron, schedule.every, schedule.zone_name)


def prepared_task(schedule: PeriodicSchedule) -> Task:
    """The schedule's task on its queue and priority (blank keeps the task's own)."""
    return load_task(schedule.task).using(queue_name=schedule.queue_name or None, priority=schedule.priority)


def fire(
    schedule: PeriodicSchedule, scheduled_at: datetime, now: datetime, using: str, manual: bool = False
) -> uuid.UUID | None:
    """Enqueue the schedule's job for ``scheduled_at``; ``None`` if that time has fired already.

    The run row goes first, in a savepoint: when another supervisor holds the same time,
    the insert waits for it and then fails, and this one enqueues nothing.
    """
    task = prepared_task(schedule)
    with transaction.atomic(using=using):
        run = _claim(schedule, scheduled_at, now, using, manual)
        if run is None:
            return None
        job_id = uuid.UUID(str(task.enqueue(*schedule.args, **schedule.kwargs).id))
        PeriodicRun.objects.using(using).filter(pk=run.pk).update(job_id=job_id)
        later = Q(last_run_at__isnull=True) | Q(last_run_at__lte=scheduled_at)
        PeriodicSchedule.objects.using(using).filter(later, pk=schedule.pk).update(
            last_run_at=scheduled_at, last_job_id=job_id
        )
    logger.info(
        "periodic schedule %r: job %s for %s",
        schedule.name,
        job_id,
        scheduled_at.isoformat(),
        extra={"schedule": schedule.name, "scheduled_at": scheduled_at.isoformat(), "job_id": str(job_id)},
    )
    return job_id


def _claim(
    schedule: PeriodicSchedule, scheduled_at: datetime, now: datetime, using: str, manual: bool
) -> PeriodicRun | None:
    try:
        with transaction.atomic(using=using):
            return PeriodicRun.objects.using(using).create(
                schedule=schedule, scheduled_at=scheduled_at, fired_at=now, manual=manual
            )
    except IntegrityError:  # bourbon_periodic_once: fired already (or the schedule was just deleted)
        return None


def prune_runs(now: datetime, using: str) -> int:
    """Delete up to ``PRUNE_BATCH`` runs older than :data:`RUN_HISTORY`."""
    runs = PeriodicRun.objects.using(using)
    old = (
        runs.filter(scheduled_at__lt=now - RUN_HISTORY).order_by().values("pk")[: get_settings().PRUNE_BATCH]
    )
    deleted, _ = runs.filter(pk__in=Subquery(old)).delete()
    return deleted


class PeriodicFirer:
    """The supervisor's periodic duty: :meth:`run_once` fires what is due and says when to call again.

    The first pass brings the settings' schedules into the database
    (:func:`~.sync.sync_settings_schedules`).
    """

    def __init__(self, using: str = "default") -> None:
        self.using = using
        self._synced = False
        self._next_prune: datetime | None = None
        self._reported: set[tuple[str, str]] = set()

    def run_once(self, now: datetime) -> float:
        """Fire every enabled schedule's due times; return the seconds until the next one is due."""
        if not self._synced:
            self._sync(now)
        schedules = PeriodicSchedule.objects.using(self.using).filter(enabled=True)
        waits = [self._run_schedule(schedule, now) for schedule in schedules]
        self._prune_if_due(now)
        return max(SHORTEST_WAIT, min([LONGEST_WAIT, *waits]))

    def _sync(self, now: datetime) -> None:
        """Once per firer; a database error is tried again next pass, anything else is logged once."""
        try:
            sync_settings_schedules(self.using, now)
        except DatabaseError:
            raise
        except Exception:  # a task module that fails to import, say: the database's schedules still fire
            logger.exception("periodic schedules: could not copy BOURBON_JOBS['PERIODIC'] into the database")
        self._synced = True

    def _run_schedule(self, schedule: PeriodicSchedule, now: datetime) -> float:
        grace = timedelta(seconds=get_settings().PERIODIC_GRACE)
        try:
            timing = timing_of(schedule)
            plan = plan_runs(
                timing, schedule.next_run_at or timing.next_after(now), now, grace, schedule.missed
            )
        except (ImportError, ValueError, LookupError) as exc:  # croniter gone, a zone or expression broken
            self._report_once(schedule, f"cannot work out its times: {exc}")
            return LONGEST_WAIT
        if plan.missed:
            self._log_missed(schedule, plan)
        for scheduled_at in plan.fire:
            self._fire(schedule, scheduled_at, now)
        self._advance(schedule, plan.cursor)
        return (plan.cursor - now).total_seconds()

    def _fire(self, schedule: PeriodicSchedule, scheduled_at: datetime, now: datetime) -> None:
        try:
            fire(schedule, scheduled_at, now, self.using)
        except DatabaseError:
            raise
        except Exception:  # the task's code or arguments: this time is lost, the schedule goes on
            logger.exception(
                "periodic schedule %r: could not enqueue its job for %s",
                schedule.name,
                scheduled_at.isoformat(),
            )

    def _advance(self, schedule: PeriodicSchedule, cursor: datetime) -> None:
        """Move ``next_run_at`` on, unless another supervisor or an operator changed it meanwhile."""
        if cursor == schedule.next_run_at:
            return
        seen = Q(next_run_at=schedule.next_run_at) if schedule.next_run_at else Q(next_run_at__isnull=True)
        PeriodicSchedule.objects.using(self.using).filter(seen, pk=schedule.pk).update(next_run_at=cursor)

    def _log_missed(self, schedule: PeriodicSchedule, plan: Plan) -> None:
        assert plan.missed is not None
        first, last = (moment.isoformat() for moment in plan.missed)
        if schedule.missed == MissedPolicy.RUN_LATEST:
            logger.warning(
                "periodic schedule %r: missed %s to %s; running %s once", schedule.name, first, last, last
            )
        else:
            logger.warning(
                "periodic schedule %r: missed %s to %s; skipped (missed='skip')", schedule.name, first, last
            )

    def _report_once(self, schedule: PeriodicSchedule, problem: str) -> None:
        if (schedule.name, problem) not in self._reported:
            self._reported.add((schedule.name, problem))
            logger.error("periodic schedule %r %s", schedule.name, problem)

    def _prune_if_due(self, now: datetime) -> None:
        if self._next_prune is None or now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY
            prune_runs(now, self.using)
