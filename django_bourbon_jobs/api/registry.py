"""The tasks the HTTP API may dispatch: those ``BOURBON_JOBS["API_TASKS"]`` lists, and nothing else.

A name from a request is only ever looked up in that setting; it is never
imported, so the API cannot be turned into a way to run arbitrary code.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.core import checks
from django.tasks import Task

from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.exceptions import BourbonJobsError, ConfigurationError, UnknownTask
from django_bourbon_jobs.results import load_task


class TaskNotDispatchable(BourbonJobsError, LookupError):
    """The name is not in ``API_TASKS``."""


def api_tasks() -> dict[str, str]:
    """Every name a request may use, to its task path: the aliases and the listed paths themselves."""
    configured = get_settings().API_TASKS
    if isinstance(configured, Mapping):
        return {**{path: path for path in configured.values()}, **configured}
    return {path: path for path in configured}


def display_name(task_path: str) -> str:
    """A job's task as the API shows it: its first alias, or its path."""
    configured = get_settings().API_TASKS
    if isinstance(configured, Mapping):
        for alias, path in configured.items():
            if path == task_path:
                return alias
    return task_path


def resolve(name: str) -> Task:
    """The Task ``name`` stands for; :class:`TaskNotDispatchable` unless ``API_TASKS`` lists it."""
    path = api_tasks().get(name)
    if path is None:
        raise TaskNotDispatchable(f"Task {name!r} cannot be dispatched over HTTP: it is not in API_TASKS.")
    return load_task(path)


def task_path_for(name: str) -> str:
    """The path a filter value names: an alias's path, or the value itself."""
    return api_tasks().get(name, name)


def check_api_tasks(app_configs: object = None, **kwargs: object) -> list[checks.CheckMessage]:
    """``bourbon_jobs.E008``: every path in ``API_TASKS`` imports to a Task."""
    try:
        paths = sorted(set(api_tasks().values()))
    except ConfigurationError:
        return []  # reported as bourbon_jobs.E001/E002
    errors: list[checks.CheckMessage] = []
    for path in paths:
        try:
            load_task(path)
        except UnknownTask as exc:
            errors.append(
                checks.Error(f"BOURBON_JOBS['API_TASKS'] lists {path!r}: {exc}", id="bourbon_jobs.E008")
            )
    return errors
