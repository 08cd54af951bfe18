"""Database connections around each job, as Django handles them around each request.

Django drops a request's connections that are broken or older than
``CONN_MAX_AGE`` (``close_old_connections`` on ``request_started`` and
``request_finished``), and with ``CONN_HEALTH_CHECKS`` checks a kept one before
its next use. Job code runs on executor threads, each with connections of its
own, so the worker does the same before and after every job: a connection that
a database restart broke is dropped, and the next job connects afresh.

An attempt whose connection broke under it (the database restarted or the
network dropped) failed through no fault of its own: :func:`lost_connection`
tells the executor so, and the attempt is refunded rather than charged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from django.db import InterfaceError, OperationalError, close_old_connections, connections
from django.db.backends.signals import connection_created
from django.dispatch import receiver

_thread = threading.local()


@receiver(connection_created)
def _note_connection(**kwargs: Any) -> None:
    _thread.has_connections = True


def before_job() -> None:
    """``close_old_connections()``, skipped on a thread that never connected (no query in its jobs).

    Asking Django which connections a thread holds costs more than a no-op job
    itself, so the worker keeps track: a connection made on this thread sets a
    flag, which stays up until no connection of the thread is open.
    """
    if getattr(_thread, "has_connections", False):
        close_old_connections()


def after_job() -> None:
    if getattr(_thread, "has_connections", False):
        close_old_connections()
        _thread.has_connections = any(
            conn.connection is not None for conn in connections.all(initialized_only=True)
        )


def close_if_broken_or_old(using: str) -> None:
    """The worker's own connection, at each heartbeat: the same rule, outside any transaction."""
    connection = connections[using]
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def lost_connection(exc: BaseException) -> bool:
    """True if ``exc`` came from a database connection of this thread that no longer works.

    A query error (a constraint, a lock timeout, bad SQL) leaves its
    connection usable and is the job's own failure; a broken connection is not.
    """
    if not any(isinstance(link, OperationalError | InterfaceError) for link in _chain(exc)):
        return False
    return any(
        conn.errors_occurred and (conn.connection is None or not conn.is_usable())
        for conn in connections.all(initialized_only=True)
    )
