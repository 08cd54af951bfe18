"""The settings' schedules as ``PeriodicSchedule`` rows (``source="settings"``), kept in step with them.

Run when a firing supervisor starts and after ``migrate``, so the admin lists what the
settings declare. A row whose cron, interval or time zone changed (or that was re-enabled)
waits for its next time from now; its last run is kept. Rows of schedules no longer
declared are deleted. An entry the system checks refuse is logged and its row, if any,
left as it was.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from datetime import datetime
from typing import Any

from django.db import IntegrityError, router, transaction
from django.utils import timezone

from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.models import PeriodicSchedule, ScheduleSource
from django_bourbon_jobs.periodic.definitions import Definition, definition_from, schedule_problems
from django_bourbon_jobs.periodic.timing import timing_for

logger = logging.getLogger("django_bourbon_jobs.periodic")

DEFINED = tuple(f.name for f in fields(Definition))
TIMING = ("cron", "every", "timezone")


def next_time(schedule: PeriodicSchedule, after: datetime) -> datetime:
    """The schedule's first scheduled time after ``after``."""
    return timing_for(schedule.cron, schedule.every, schedule.zone_name).next_after(after)


def declared_schedules() -> dict[str, Definition]:
    """The entries of ``PERIODIC`` the system checks accept; the others are logged and left out."""
    declared = {}
    for name, raw in get_settings().PERIODIC.items():
        problems = schedule_problems(name, raw)
        if problems:
            logger.error("periodic schedule %r left out: %s", name, " ".join(m for _, m in problems))
            continue
        declared[name] = definition_from(raw)
    return declared


def sync_settings_schedules(using: str | None = None, now: datetime | None = None) -> None:
    """Make the ``source="settings"`` rows match ``BOURBON_JOBS["PERIODIC"]``."""
    using = using or router.db_for_write(PeriodicSchedule)
    now = now or timezone.now()
    declared = declared_schedules()
    named = list(get_settings().PERIODIC)  # a schedule the checks refuse keeps its row and history
    manager = PeriodicSchedule.objects.db_manager(using)
    with transaction.atomic(using=using):
        manager.filter(source=ScheduleSource.SETTINGS).exclude(name__in=named).delete()
        for name, definition in declared.items():
            _sync_one(name, definition, now, using)


def _sync_one(name: str, definition: Definition, now: datetime, using: str) -> None:
    row = PeriodicSchedule.objects.db_manager(using).filter(name=name).first()
    if row is None:
        row = _create(name, definition, now, using)
        if row is not None:
            return
        row = PeriodicSchedule.objects.db_manager(using).get(name=name)  # another supervisor made it
    _update(row, definition, now, using)


def _create(name: str, definition: Definition, now: datetime, using: str) -> PeriodicSchedule | None:
    row = PeriodicSchedule(name=name, source=ScheduleSource.SETTINGS, **_values(definition))
    row.next_run_at = next_time(row, now)
    try:
        with transaction.atomic(using=using):
            row.save(force_insert=True, using=using)
    except IntegrityError:
        return None
    logger.info("periodic schedule %r added from settings; next run %s", name, row.next_run_at)
    return row


def _update(row: PeriodicSchedule, definition: Definition, now: datetime, using: str) -> None:
    values = _values(definition)
    changed = [key for key in DEFINED if getattr(row, key) != values[key]]
    if row.source != ScheduleSource.SETTINGS:
        logger.warning(
            "periodic schedule %r is declared in settings: its admin version is replaced", row.name
        )
        changed.append("source")
        row.source = ScheduleSource.SETTINGS
    if not changed:
        return
    restart = set(changed) & set(TIMING) or (definition.enabled and not row.enabled)
    for key in DEFINED:
        setattr(row, key, values[key])
    if restart or row.next_run_at is None:
        row.next_run_at = next_time(row, now)
        changed.append("next_run_at")
    row.save(update_fields=[*changed, "updated_at"], using=using)


def _values(definition: Definition) -> dict[str, Any]:
    return {key: getattr(definition, key) for key in DEFINED}
