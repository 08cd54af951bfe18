"""What a periodic schedule is made of, checked key by key.

The same checks serve ``BOURBON_JOBS["PERIODIC"]`` (system checks, each with its id) and
the admin's form (each message on its field). ``schedule_problems`` reports; ``definition_from``
turns a checked entry into a :class:`Definition`, the shape a ``PeriodicSchedule`` row takes.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.tasks import Task
from django.tasks.exceptions import InvalidTask

from django_bourbon_jobs.exceptions import InvalidPayload, UnknownTask
from django_bourbon_jobs.periodic import timing
from django_bourbon_jobs.serialization import ensure_json

KEYS = frozenset(
    {"task", "cron", "every", "args", "kwargs", "timezone", "queue_name", "priority", "missed", "enabled"}
)
MISSED_POLICIES = ("skip", "run_latest")
SHORTEST_INTERVAL = timedelta(seconds=1)
NAME_LENGTH = 200

E_SHAPE = "bourbon_jobs.E020"
E_TASK = "bourbon_jobs.E021"
E_TIMING = "bourbon_jobs.E022"
E_CRON = "bourbon_jobs.E023"
E_EVERY = "bourbon_jobs.E024"
E_TIMEZONE = "bourbon_jobs.E025"
E_ARGUMENTS = "bourbon_jobs.E026"
E_MISSED = "bourbon_jobs.E027"
E_ROUTING = "bourbon_jobs.E028"

Problem = tuple[str, str]
"""``(check id, message)``."""


@dataclass(frozen=True)
class Definition:
    """One schedule as declared: the fields of a ``PeriodicSchedule`` row that settings own."""

    task: str
    cron: str = ""
    every: timedelta | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    timezone: str = ""
    """An IANA name; ``""`` means the project's ``TIME_ZONE``."""
    queue_name: str = ""
    """``""`` keeps the task's own queue."""
    priority: int | None = None
    """``None`` keeps the task's own priority."""
    missed: str = "skip"
    enabled: bool = True


def load_task(path: object) -> Task:
    """The Task a dotted path names; :class:`UnknownTask` (with the reason) if none."""
    from django_bourbon_jobs.results import load_task as load

    if not isinstance(path, str) or "." not in path:
        raise UnknownTask("must be the dotted path of a @task, such as 'reports.tasks.nightly'")
    return load(path)


def task_problem(path: object) -> str | None:
    try:
        load_task(path)
    except UnknownTask as exc:
        return str(exc)
    return None


def cron_problem(expression: object) -> str | None:
    try:
        return timing.cron_problem(expression)
    except ImportError:
        return "needs croniter, which is not installed: pip install 'django-bourbon-jobs[periodic]'"


def as_interval(every: object) -> timedelta:
    """``every`` as a timedelta: seconds (a number) or a timedelta."""
    if isinstance(every, timedelta):
        return every
    if isinstance(every, int | float) and not isinstance(every, bool):
        return timedelta(seconds=every)
    raise TypeError("every must be a number of seconds or a timedelta")


def every_problem(every: object) -> str | None:
    try:
        interval = as_interval(every)
    except (TypeError, OverflowError, ValueError):
        return "must be a number of seconds or a timedelta"
    if interval < SHORTEST_INTERVAL:
        return "must be at least one second"
    return None


def timezone_problem(name: object) -> str | None:
    if not isinstance(name, str) or not name:
        return "must be the name of a time zone, such as 'Europe/Paris'"
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return "is not a known time zone (an IANA name such as 'Europe/Paris')"
    return None


def args_problem(args: object) -> str | None:
    if not isinstance(args, list | tuple):
        return "must be a list of positional arguments"
    return _json_problem(list(args))


def kwargs_problem(kwargs: object) -> str | None:
    if not isinstance(kwargs, Mapping) or not all(isinstance(key, str) for key in kwargs):
        return "must be a dict of keyword arguments with string keys"
    return _json_problem(dict(kwargs))


def _json_problem(value: object) -> str | None:
    try:
        ensure_json(value, InvalidPayload, "it")
    except InvalidPayload as exc:
        return str(exc).replace("it must", "must", 1)
    return None


def missed_problem(missed: object) -> str | None:
    if missed not in MISSED_POLICIES:
        return f"must be one of {', '.join(repr(p) for p in MISSED_POLICIES)}"
    return None


def routing_problem(task: Task, queue_name: object, priority: object) -> str | None:
    """What the task's backend refuses about the queue and priority (Django's own validation)."""
    if queue_name not in (None, "") and not isinstance(queue_name, str):
        return "queue_name must be a queue name (a string)"
    if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)):
        return "priority must be a whole number"
    try:
        task.using(queue_name=queue_name or None, priority=priority)
    except InvalidTask as exc:
        return str(exc)
    return None


def schedule_problems(name: object, raw: object) -> list[Problem]:
    """Every problem of one ``PERIODIC`` entry, as ``(check id, message)``."""
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_LENGTH:
        reason = "use a non-empty string of at most 200 characters"
        return [(E_SHAPE, f"BOURBON_JOBS['PERIODIC'] has a schedule name {name!r}: {reason}.")]
    where = f"BOURBON_JOBS['PERIODIC'][{name!r}]"
    if not isinstance(raw, Mapping):
        return [(E_SHAPE, f"{where} must be a dict with 'task' and 'cron' or 'every' (got {raw!r}).")]
    problems = [(E_SHAPE, f"{where} has an unknown key {key!r}.") for key in sorted(set(raw) - KEYS, key=str)]
    for check_id, key, reason in _key_problems(raw):
        problems.append((check_id, f"{where}[{key!r}] {reason} (got {raw.get(key)!r})."))
    return problems


def _key_problems(raw: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    found = [(E_TASK, "task", task_problem(raw.get("task")))]
    found += _timing_problems(raw)
    optional: list[tuple[str, str, Any]] = [
        (E_TIMEZONE, "timezone", timezone_problem),
        (E_ARGUMENTS, "args", args_problem),
        (E_ARGUMENTS, "kwargs", kwargs_problem),
        (E_MISSED, "missed", missed_problem),
        (E_ROUTING, "enabled", lambda value: None if isinstance(value, bool) else "must be True or False"),
    ]
    found += [(check_id, key, check(raw[key])) for check_id, key, check in optional if key in raw]
    if found[0][2] is None:
        routing = routing_problem(load_task(raw["task"]), raw.get("queue_name"), raw.get("priority"))
        found.append((E_ROUTING, "queue_name" if "queue_name" in raw else "priority", routing))
    return [(check_id, key, reason) for check_id, key, reason in found if reason]


def _timing_problems(raw: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    has_cron, has_every = raw.get("cron") is not None, raw.get("every") is not None
    if has_cron == has_every:
        reason = "has both 'cron' and 'every': give one" if has_cron else "needs 'cron' or 'every'"
        return [(E_TIMING, "cron", reason)]
    if has_cron:
        return [(E_CRON, "cron", cron_problem(raw["cron"]))]
    return [(E_EVERY, "every", every_problem(raw["every"]))]


def check_periodic(value: Mapping[object, object]) -> list[Problem]:
    """Every problem in ``BOURBON_JOBS["PERIODIC"]`` (a dict: ``conf`` checks that much)."""
    return [problem for name, raw in value.items() for problem in schedule_problems(name, raw)]


def definition_from(raw: Mapping[str, Any]) -> Definition:
    """A checked ``PERIODIC`` entry as a :class:`Definition`."""
    every = raw.get("every")
    return Definition(
        task=raw["task"],
        cron=(raw.get("cron") or "").strip(),
        every=as_interval(every) if every is not None else None,
        args=ensure_json(list(raw.get("args", [])), InvalidPayload, "args"),
        kwargs=ensure_json(dict(raw.get("kwargs", {})), InvalidPayload, "kwargs"),
        timezone=raw.get("timezone") or "",
        queue_name=raw.get("queue_name") or "",
        priority=raw.get("priority"),
        missed=raw.get("missed", "skip"),
        enabled=raw.get("enabled", True),
    )
