"""psycopg 3 cursors with server-side binding, on Django's own PostgreSQL connection.

Django's psycopg 3 cursors bind parameters on the client: each value is quoted
into the SQL text in Python. For the worker's claim and its batched outcomes
that quoting cost more than running the jobs. The statements here travel with
their parameters apart, dumped by psycopg's C code, and a batch of any size is
one fixed statement. They use the same connection and transaction as the
ORM, and go through Django's cursor wrapper: errors surface as Django's, and
``execute_wrapper()`` hooks and ``connection.queries`` see them.
Prepared statements stay as Django configures them (``OPTIONS["prepare_threshold"]``,
off by default so that connection poolers keep working).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def available(connection: Any) -> bool:
    """True on PostgreSQL through psycopg 3 (psycopg2 has no server-side binding)."""
    return connection.vendor == "postgresql" and getattr(connection, "Database", object).__name__ == "psycopg"


@contextmanager
def cursor(connection: Any) -> Iterator[Any]:
    """A ``psycopg.Cursor`` on ``connection``, wrapped as Django wraps its own.

    So errors are raised as ``django.db`` ones, ``execute_wrapper()`` hooks see
    the statements, and ``connection.queries`` logs them when queries are logged.
    """
    import psycopg

    connection.ensure_connection()
    with connection.wrap_database_errors:
        bound = psycopg.Cursor(connection.connection)
    wrap = connection.make_debug_cursor if connection.queries_logged else connection.make_cursor
    with wrap(bound) as wrapped:
        yield wrapped
