"""What operators do to schedules (the admin calls these): run now, pause, resume, save an edit.

A schedule that starts again (resumed, or its timing edited) waits for its next time from
now: the time it was paused or the old timing does not count as missed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from django.db import router
from django.db.models import QuerySet
from django.utils import timezone

from django_bourbon_jobs.models import PeriodicRun, PeriodicSchedule, ScheduleSource
from django_bourbon_jobs.periodic.firing import fire
from django_bourbon_jobs.periodic.sync import TIMING, next_time

logger = logging.getLogger("django_bourbon_jobs.periodic")


def run_now(schedule: PeriodicSchedule, using: str | None = None) -> uuid.UUID:
    """Enqueue the schedule's job at once, outside its timing; its own times are unchanged."""
    now = timezone.now()
    job_id = fire(schedule, now, now, using or router.db_for_write(PeriodicRun), manual=True)
    assert job_id is not None, "a manual run is outside the once-per-time constraint"
    logger.info("periodic schedule %r run by hand: job %s", schedule.name, job_id)
    return job_id


def editable(schedules: QuerySet[PeriodicSchedule]) -> QuerySet[PeriodicSchedule]:
    """The schedules operators may change: not those the settings declare."""
    return schedules.exclude(source=ScheduleSource.SETTINGS)


def pause(schedules: QuerySet[PeriodicSchedule]) -> int:
    paused = editable(schedules).filter(enabled=True)
    names = list(paused.values_list("name", flat=True))
    count = paused.update(enabled=False, updated_at=timezone.now())
    for name in names:
        logger.info("periodic schedule %r paused", name)
    return count


def resume(schedules: QuerySet[PeriodicSchedule]) -> int:
    """Enable the paused ones among ``schedules``, each waiting for its next time from now."""
    resumed = list(editable(schedules).filter(enabled=False))
    now = timezone.now()
    for schedule in resumed:
        schedule.enabled, schedule.next_run_at = True, next_time(schedule, now)
        schedule.save(update_fields=["enabled", "next_run_at", "updated_at"])
        logger.info("periodic schedule %r resumed; next run %s", schedule.name, schedule.next_run_at)
    return len(resumed)


def prepare_save(schedule: PeriodicSchedule, changed: Iterable[str]) -> None:
    """Before an edited (or new) schedule is saved: a new timing, or a resumed one, counts from now."""
    changed = set(changed)
    if schedule._state.adding or changed & set(TIMING) or ("enabled" in changed and schedule.enabled):
        schedule.next_run_at = next_time(schedule, timezone.now())
