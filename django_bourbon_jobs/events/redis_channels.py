"""Redis for job events: the connection, the channel names, the payload, and outages logged once.

Configure it once, the Django way::

    CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://..."}}
    TASKS = {"default": {"BACKEND": "django_bourbon_jobs.backends.DatabaseBackend",
                         "OPTIONS": {"REDIS": "default"}}}

The database stays the system of record: when Redis is flushed, restarted or
unreachable, dispatch carries on, live readers poll the database, and workers
fall back to polling until it answers again. Each outage is logged once per
process and role (publishing, subscribing), and so is its end.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

logger = logging.getLogger("django_bourbon_jobs.events")

CHANNEL = "bourbon_jobs:enqueued"
"""The enqueue announcements' channel, under :func:`namespace` (see :func:`enqueued_channel`)."""


@functools.cache
def configured_alias() -> str | None:
    """The cache alias named by the first task backend's ``OPTIONS['REDIS']`` (ours sets ``redis_alias``).

    Read off the backend (not by importing its class), so events depend on no backend.
    Only backends that load can be ours: one that does not (its package is not
    installed here, say) is skipped with a warning, not allowed to stop this
    process. Worked out once per process, and again when ``TASKS`` changes.
    """
    from django.tasks import task_backends

    for name in task_backends:
        try:
            backend = task_backends[name]
        except Exception as exc:  # noqa: BLE001  (another backend's failure is not ours to raise)
            logger.warning("TASKS[%r] cannot be loaded (%s); skipped: it is not a DatabaseBackend", name, exc)
            continue
        alias = getattr(backend, "redis_alias", None)
        if alias:
            return str(alias)
    return None


def connection(alias: str) -> Any:
    from django_redis import get_redis_connection

    return get_redis_connection(alias)


@functools.cache
def namespace() -> str:
    """What every channel name starts with, so projects (or test runs) sharing a Redis stay apart.

    Redis pub/sub ignores database numbers: a subscriber on any database of the
    server hears every channel. ``BOURBON_JOBS["REDIS_NAMESPACE"]``, or by default
    the Redis cache alias's ``KEY_PREFIX`` and the jobs database's name.
    """
    from django.conf import settings
    from django.db import connections, router

    from django_bourbon_jobs.conf import get_settings
    from django_bourbon_jobs.models import Job

    configured = get_settings().REDIS_NAMESPACE
    if configured is not None:
        return configured
    alias = configured_alias()
    prefix = settings.CACHES.get(alias, {}).get("KEY_PREFIX", "") if alias else ""
    database = connections[router.db_for_write(Job)].settings_dict["NAME"]
    return f"{prefix}:{database}"


@receiver(setting_changed)
def _forget_namespace(*, setting: str, **kwargs: Any) -> None:
    if setting in ("BOURBON_JOBS", "CACHES", "DATABASES", "TASKS"):
        namespace.cache_clear()
    if setting == "TASKS":
        configured_alias.cache_clear()


def enqueued_channel() -> str:
    """Where enqueues are announced (the queue name), for workers that cannot LISTEN."""
    return f"{namespace()}:{CHANNEL}"


def job_channel(job_id: object) -> str:
    """Where a job's events go: ``{"job_id", "status", "progress"}`` as JSON, one per change."""
    return f"{namespace()}:bourbon_jobs:job:{job_id}"


def job_event(job: Any) -> tuple[str, str]:
    payload = {"job_id": str(job.pk), "status": job.status, "progress": job.progress}
    return job_channel(job.pk), json.dumps(payload)


def workflow_channel(workflow_id: object) -> str:
    """Where a workflow's changes are announced: its own, and each of its steps'."""
    return f"{namespace()}:bourbon_jobs:workflow:{workflow_id}"


def workflow_event(workflow_id: object, status: str | None = None) -> tuple[str, str]:
    """A wake-up for the workflow's readers; ``status`` when the workflow itself changed."""
    return workflow_channel(workflow_id), json.dumps({"workflow_id": str(workflow_id), "status": status})


_MESSAGES = {
    "publish": (
        "Redis %r unreachable (%s); workers fall back to polling",
        "Redis %r reachable again",
    ),
    "subscribe": (
        "Redis %r unavailable for job events (%s); reading the database every poll interval until it is back",
        "Redis %r is back; job events come from pub/sub again",
    ),
}


class Outages:
    """The Redis aliases found unreachable, per role: each outage is logged once, and so is its end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down: set[tuple[str, str]] = set()

    def lost(self, alias: str, exc: Exception, role: str) -> None:
        with self._lock:
            if (alias, role) in self._down:
                return
            self._down.add((alias, role))
        logger.warning(_MESSAGES[role][0], alias, exc)

    def back(self, alias: str, role: str) -> None:
        with self._lock:
            if (alias, role) not in self._down:
                return
            self._down.discard((alias, role))
        logger.warning(_MESSAGES[role][1], alias)


outages = Outages()
