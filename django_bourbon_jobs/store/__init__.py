"""Storage: the one place that talks SQL beyond the ORM.

:func:`for_connection` picks the store for a database connection, once per
connection kind: :class:`~.portable.PortableStore` (the ORM and portable SQL; SQLite
and any other database) or :class:`~.postgres.PostgresStore` (PostgreSQL, through psycopg 3:
one-statement INSERT + NOTIFY with bound values, COPY, advisory locks). PostgreSQL through
psycopg 2 is refused at start-up (system check ``bourbon_jobs.E009``).
The backend and the dispatch face call ``insert``, ``insert_many``, ``notify`` and
``lock_idempotency_key``; the worker calls ``claim``, ``extend_leases``,
``record_outcomes`` and ``release``. Nothing else writes SQL by hand; the statements'
text is in :mod:`.statements`.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from django.db import connections

if TYPE_CHECKING:
    from django_bourbon_jobs.store.portable import PortableStore


def for_connection(using: str) -> PortableStore:
    """The store for the database ``using`` names: PostgreSQL's, or the portable one."""
    return _store("postgres" if connections[using].vendor == "postgresql" else "portable")


@functools.cache
def _store(kind: str) -> PortableStore:
    """Built on first use: the stores load the models, which ``@task`` must not need."""
    from django_bourbon_jobs.store.portable import PortableStore
    from django_bourbon_jobs.store.postgres import PostgresStore

    return PostgresStore() if kind == "postgres" else PortableStore()
