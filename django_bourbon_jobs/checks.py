"""System checks (``manage.py check``): misconfiguration fails at start-up, with stable ids.

bourbon_jobs.E001  BOURBON_JOBS is not a dict, or has an unknown key
bourbon_jobs.E002  a BOURBON_JOBS value is invalid (the message names the key)
bourbon_jobs.E003  STATUS_URL_NAME does not reverse with a ``job_id``
bourbon_jobs.E004  the jobs database is neither PostgreSQL nor SQLite
bourbon_jobs.E005  DatabaseBackend is configured but the app is not installed (from the backend)
bourbon_jobs.E006  the backend has unknown OPTIONS (from the backend)
bourbon_jobs.E007  the backend's OPTIONS["REDIS"] names no django-redis cache (from the backend)
bourbon_jobs.E008  an API_TASKS entry does not import to a Task
bourbon_jobs.E009  the jobs database is PostgreSQL through psycopg 2 (psycopg 3 is required)
bourbon_jobs.E020  a QUEUE_LIMITS entry is malformed (a bad rate, a limit below 1, an unknown key)
bourbon_jobs.W001  the middleware is installed but STATUS_URL_NAME is not set
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.db import router
from django.urls import NoReverseMatch, reverse

from django_bourbon_jobs import conf

MIDDLEWARE_PATH = "django_bourbon_jobs.middleware.AsyncDispatchMiddleware"
SUPPORTED_VENDORS = {"postgresql", "sqlite"}


@checks.register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    return [
        checks.Error(message, id=check_id)
        for check_id, message in conf.validate(getattr(settings, "BOURBON_JOBS", {}))
    ]


@checks.register(checks.Tags.urls)
def check_status_url(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    raw = getattr(settings, "BOURBON_JOBS", {})
    name = raw.get("STATUS_URL_NAME") if isinstance(raw, dict) else None
    if not name:
        if MIDDLEWARE_PATH in settings.MIDDLEWARE:
            return [
                checks.Warning(
                    "AsyncDispatchMiddleware is installed but BOURBON_JOBS['STATUS_URL_NAME'] is not set, "
                    "so dispatch_async_json() replies carry no status_url.",
                    hint="Set it to the name of a URL that takes a job_id argument.",
                    id="bourbon_jobs.W001",
                )
            ]
        return []
    try:
        reverse(name, kwargs={"job_id": "00000000-0000-0000-0000-000000000000"})
    except NoReverseMatch:
        return [
            checks.Error(
                f"BOURBON_JOBS['STATUS_URL_NAME'] is {name!r}, "
                "which does not reverse with a job_id argument.",
                id="bourbon_jobs.E003",
            )
        ]
    return []


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
