"""System checks (``manage.py check``): misconfiguration fails at start-up, with stable ids.

bourbon_jobs.E001  BOURBON_JOBS is not a dict, or has an unknown key
bourbon_jobs.E002  a BOURBON_JOBS value is invalid (the message names the key)
bourbon_jobs.E003  STATUS_URL_NAME does not reverse with a ``job_id`` (or ``pk``)
bourbon_jobs.E004  the jobs database is neither PostgreSQL nor SQLite
bourbon_jobs.E005  DatabaseBackend is configured but the app is not installed (from the backend)
bourbon_jobs.E006  the backend has unknown OPTIONS (from the backend)
bourbon_jobs.E007  the backend's OPTIONS["REDIS"] names no django-redis cache (from the backend)
bourbon_jobs.E008  an API_TASKS entry does not import to a Task
bourbon_jobs.E009  the jobs database is PostgreSQL through psycopg 2 (psycopg 3 is required)
bourbon_jobs.E020  a PERIODIC schedule is not a dict, has a bad name or an unknown key
bourbon_jobs.E021  a PERIODIC schedule's task does not import to a Task
bourbon_jobs.E022  a PERIODIC schedule has both or neither of cron and every
bourbon_jobs.E023  a PERIODIC schedule's cron expression is invalid (or croniter is not installed)
bourbon_jobs.E024  a PERIODIC schedule's every is not a number of seconds (at least 1) or a timedelta
bourbon_jobs.E025  a PERIODIC schedule's timezone is unknown
bourbon_jobs.E026  a PERIODIC schedule's args or kwargs are not a JSON list / object
bourbon_jobs.E027  a PERIODIC schedule's missed is not "skip" or "run_latest"
bourbon_jobs.E028  a PERIODIC schedule's queue_name, priority or enabled is refused
bourbon_jobs.E030  a QUEUE_LIMITS entry is malformed (a bad rate, a limit below 1, an unknown key)
bourbon_jobs.W001  the middleware is installed, STATUS_URL_NAME is not set and the API is not mounted
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core import checks
from django.db import router
from django.urls import NoReverseMatch

from django_bourbon_jobs import conf
from django_bourbon_jobs.status_urls import api_status_path, reverse_job_url

MIDDLEWARE_PATH = "django_bourbon_jobs.middleware.AsyncDispatchMiddleware"
SUPPORTED_VENDORS = {"postgresql", "sqlite"}
SAMPLE_JOB_ID = "00000000-0000-0000-0000-000000000000"


@checks.register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    return [
        checks.Error(message, id=check_id)
        for check_id, message in conf.validate(getattr(settings, "BOURBON_JOBS", {}))
    ]


@checks.register(checks.Tags.urls)
def check_status_url(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    raw = getattr(settings, "BOURBON_JOBS", {})
    if not isinstance(raw, dict):
        return []  # bourbon_jobs.E001 says so
    name = raw.get("STATUS_URL_NAME")
    if not name:
        return _check_api_fallback()
    try:
        reverse_job_url(name, SAMPLE_JOB_ID)
    except NoReverseMatch:
        return [
            checks.Error(
                f"BOURBON_JOBS['STATUS_URL_NAME'] is {name!r}, "
                "which does not reverse with a job_id (or pk) argument.",
                id="bourbon_jobs.E003",
            )
        ]
    return []


def _check_api_fallback() -> list[checks.CheckMessage]:
    """bourbon_jobs.W001: replies would carry no status_url (no STATUS_URL_NAME and no API mounted)."""
    if MIDDLEWARE_PATH not in settings.MIDDLEWARE or api_status_path(SAMPLE_JOB_ID) is not None:
        return []
    return [
        checks.Warning(
            "AsyncDispatchMiddleware is installed but BOURBON_JOBS['STATUS_URL_NAME'] is not set "
            "and the jobs API is not mounted, so dispatch_async_json() replies carry no status_url.",
            hint="Set it to the name of a URL that takes a job_id (or pk) argument, "
            "or include django_bourbon_jobs.api.urls.",
            id="bourbon_jobs.W001",
        )
    ]


@checks.register(checks.Tags.database)
def check_database(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    from django.db import connections

    from django_bourbon_jobs.models import Job

    alias = router.db_for_write(Job)
    if databases is not None and alias not in databases:
        return []
    vendor = connections[alias].vendor
    if vendor == "postgresql" and getattr(connections[alias], "Database", object).__name__ != "psycopg":
        return [
            checks.Error(
                f"Jobs are stored in database {alias!r} through psycopg 2; django-bourbon-jobs needs "
                "psycopg 3 on PostgreSQL (claims, outcomes and COPY use its server-side binding).",
                hint="pip install 'psycopg[binary]' (Django uses psycopg 3 when it is installed).",
                id="bourbon_jobs.E009",
            )
        ]
    if vendor in SUPPORTED_VENDORS:
        return []
    return [
        checks.Error(
            f"Jobs are stored in database {alias!r} ({vendor}), "
            "but only PostgreSQL and SQLite are supported.",
            id="bourbon_jobs.E004",
        )
    ]


@checks.register()
def check_api_tasks(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """bourbon_jobs.E008: every path in API_TASKS imports to a Task."""
    from django_bourbon_jobs.api.registry import check_api_tasks as check

    return check()


@checks.register()
def check_periodic(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """bourbon_jobs.E020-E028: every key of every ``PERIODIC`` schedule (a non-dict is E002)."""
    from django_bourbon_jobs.periodic.definitions import check_periodic as check

    raw = getattr(settings, "BOURBON_JOBS", {})
    schedules = raw.get("PERIODIC", {}) if isinstance(raw, dict) else {}
    if not isinstance(schedules, Mapping):
        return []
    return [checks.Error(message, id=check_id) for check_id, message in check(schedules)]
