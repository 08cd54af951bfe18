"""Redis through django-redis: the optional fast path for wake-ups.

Configure it once, the Django way::

    CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://..."}}
    TASKS = {"default": {"BACKEND": "django_bourbon_jobs.backends.DatabaseBackend",
                         "OPTIONS": {"REDIS": "default"}}}

The database stays the system of record: a publish happens only after the job's
transaction commits, and when Redis is flushed, restarted or unreachable,
dispatch carries on (the failure is logged once per outage) and workers fall
back to polling the database until Redis answers again.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import queue
import threading
from collections.abc import Iterable
from typing import Any

from django.core.signals import setting_changed
from django.db import transaction
from django.dispatch import receiver

from django_bourbon_jobs.worker.wakeup import Source, Wakeup

logger = logging.getLogger("django_bourbon_jobs.fastpath")

CHANNEL = "bourbon_jobs:enqueued"
"""The enqueue announcements' channel, under :func:`namespace` (see :func:`enqueued_channel`)."""

PUBLISH_ALL = """
local pairs = cjson.decode(ARGV[1])
for i = 1, #pairs do
  redis.call('PUBLISH', pairs[i][1], pairs[i][2])
end
return #pairs
"""


def configured_alias() -> str | None:
    """The cache alias named by the first DatabaseBackend's ``OPTIONS['REDIS']``, if any."""
    from django.tasks import task_backends

    from django_bourbon_jobs.backends.database import DatabaseBackend

    for backend in task_backends.all():
        if isinstance(backend, DatabaseBackend) and backend.redis_alias:
            return backend.redis_alias
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


def enqueued_channel() -> str:
    """Where enqueues are announced (the queue name), for workers that cannot LISTEN."""
    return f"{namespace()}:{CHANNEL}"


def job_channel(job_id: object) -> str:
    """Where a job's events go: ``{"job_id", "status", "progress"}`` as JSON, one per change."""
    return f"{namespace()}:bourbon_jobs:job:{job_id}"


def job_event(job: Any) -> tuple[str, str]:
    payload = {"job_id": str(job.pk), "status": job.status, "progress": job.progress}
    return job_channel(job.pk), json.dumps(payload)


class _Publisher:
    """Publishes to Redis; remembers an outage so it is logged once, not per message."""

    def __init__(self) -> None:
        self._down = threading.Event()
        self._pid = 0
        self._queue: queue.SimpleQueue[tuple[str, list[tuple[str, str]]]] = queue.SimpleQueue()
        self._scripts: dict[str, Any] = {}

    def publish_soon(self, alias: str, messages: list[tuple[str, str]]) -> None:
        """Hand ``messages`` to this process's publisher thread: a worker never waits on Redis.

        The thread is started lazily and again after a fork (threads do not survive one).
        """
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._queue = queue.SimpleQueue()
            threading.Thread(target=self._publish_forever, args=(self._queue,), daemon=True).start()
        self._queue.put((alias, messages))

    def _publish_forever(self, pending: queue.SimpleQueue[tuple[str, list[tuple[str, str]]]]) -> None:
        while True:
            alias, messages = pending.get()
            while not pending.empty():  # coalesce what queued up meanwhile into one round trip
                more_alias, more = pending.get()
                if more_alias != alias:
                    self.publish_many(alias, messages)
                    alias, messages = more_alias, []
                messages = messages + more
            self.publish_many(alias, messages)

    def publish_many(self, alias: str, messages: list[tuple[str, str]]) -> None:
        """Send every message in one command: a script that PUBLISHes each pair it is given.

        The pairs travel as one JSON argument, which the script decodes: redis-py
        packs each command argument in Python, and a worker sending two events
        per job spent more CPU packing 64 arguments per batch (or a pipeline of
        PUBLISH commands) than on the rest of the job. Channels go in ARGV, not
        KEYS (they are not keys), so any node may run it.
        """
        if not messages:
            return
        try:
            client = connection(alias)
            script = self._scripts.get(alias)
            if script is None:
                script = self._scripts[alias] = client.register_script(PUBLISH_ALL)
            script(args=[json.dumps(messages)], client=client)
        except Exception as exc:  # noqa: BLE001  (Redis must never stop a dispatch)
            if not self._down.is_set():
                self._down.set()
                logger.warning("Redis %r unreachable (%s); workers fall back to polling", alias, exc)
            return
        if self._down.is_set():
            self._down.clear()
            logger.warning("Redis %r reachable again", alias)


publisher = _Publisher()


def publish_job_events(jobs: list[Any]) -> None:
    """Announce state or progress changes of ``jobs`` (already stored) to their subscribers."""
    alias = configured_alias()
    if alias and jobs:
        publisher.publish_soon(alias, [job_event(job) for job in jobs])


def publish_after_commit(alias: str, queue_name: str, using: str) -> None:
    """Tell subscribers about a new job once (and only if) its transaction commits.

    The publish itself happens on the publisher thread, so ``enqueue()`` returns
    without waiting on Redis; enqueues close together go out as one command.
    """
    channel = enqueued_channel()
    transaction.on_commit(lambda: publisher.publish_soon(alias, [(channel, queue_name)]), using=using)


class RedisListener(Source):
    """SUBSCRIBE on a django-redis connection; pokes the wakeup for jobs on the worker's queues."""

    name = "Redis pub/sub"

    def __init__(self, wakeup: Wakeup, queues: frozenset[str], alias: str) -> None:
        super().__init__(wakeup, queues)
        self.alias = alias

    def connect(self) -> Any:
        pubsub = connection(self.alias).pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(enqueued_channel())
        return pubsub

    def relay(self, pubsub: Any) -> None:
        while not self._stopping.is_set():
            message = pubsub.get_message(timeout=1.0)
            if message and self.wanted(_text(message["data"])):
                self.wakeup.poke()

    def close(self, pubsub: Any) -> None:
        try:
            pubsub.close()
        except Exception:  # noqa: BLE001  (closing a dead connection may fail; nothing to do)
            pass


def _text(data: Any) -> str:
    return data.decode() if isinstance(data, bytes) else str(data)


def publish_job_changes(job_ids: Iterable[Any], using: str) -> None:
    """Announce the stored state of ``job_ids`` once (and only if) the caller's transaction commits.

    For changes made outside a worker (cancel, cancel request, retry); costs one
    query, and only with Redis configured.
    """
    alias = configured_alias()
    ids = list(job_ids)
    if alias and ids:
        transaction.on_commit(lambda: _publish_stored(alias, ids, using), using=using, robust=True)


def _publish_stored(alias: str, job_ids: list[Any], using: str) -> None:
    from django_bourbon_jobs.models import Job

    jobs = Job.objects.db_manager(using).filter(pk__in=job_ids).only("id", "status", "progress")
    publisher.publish_soon(alias, [job_event(job) for job in jobs])
