"""The harness's own Django: set up against the private cluster, migrated, queried in raw SQL.

The harness is a Django process of the chaos project like the workers (it dispatches
jobs like an app server with Redis configured). This module sets that up, migrates the
database, runs raw queries (:func:`try_query` survives an unreachable database) and
empties the tables between scenarios.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .config import DB_NAME, PROJECT, ROOT
from .processes import on_exit


def setup_django(pg_port: int, redis_url: str, starts: Path) -> None:
    os.environ.update(
        {
            "CHAOS_STARTS": str(starts),
            "CHAOS_PG_PORT": str(pg_port),
            "CHAOS_REDIS_URL": redis_url,
            "CHAOS_DB": DB_NAME,
            # The harness dispatches like an app server with Redis configured; whether the
            # workers get the option is up to each scenario.
            "CHAOS_USE_REDIS": "1",
            "DJANGO_SETTINGS_MODULE": "chaosproject.settings",
        }
    )
    sys.path[:0] = [str(PROJECT), str(ROOT)]
    import django

    django.setup()


def migrate(pg_port: int, redis_url: str, workdir: Path) -> Any:
    """Set Django up, migrate the database; the backend's settings (``get_settings()``)."""
    setup_django(pg_port, redis_url, workdir / "starts.log")  # each scenario names its own
    from django.core.management import call_command
    from django.db import connections

    from django_bourbon_jobs.conf import get_settings

    on_exit(connections.close_all)
    call_command("migrate", verbosity=0)
    return get_settings()


def query(sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return list(cursor.fetchall()) if cursor.description else []


def try_query(sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]] | None:
    """``query``, or ``None`` while the database is unreachable (the connection is dropped)."""
    from django.db import DatabaseError, connection

    try:
        return query(sql, params)
    except DatabaseError:
        connection.close()
        return None


def reset_tables() -> None:
    from django.apps import apps

    tables = [
        m._meta.db_table
        for label in ("bourbon_jobs", "chaosapp")
        for m in apps.get_app_config(label).get_models()
    ]
    query(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
