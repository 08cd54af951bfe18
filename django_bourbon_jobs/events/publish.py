"""Announcing job changes to Redis: after commit, from one publisher thread per process.

A worker never waits on Redis: messages are handed to the publisher thread, which
sends what queued up meanwhile as one command. Without Redis configured every
function here is a no-op.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Iterable
from typing import Any

from django.db import transaction

from django_bourbon_jobs.events.redis_channels import (
    configured_alias,
    connection,
    enqueued_channel,
    job_event,
    outages,
    workflow_event,
)

PUBLISH_ALL = """
local pairs = cjson.decode(ARGV[1])
for i = 1, #pairs do
  redis.call('PUBLISH', pairs[i][1], pairs[i][2])
end
return #pairs
"""


class _Publisher:
    """Publishes to Redis from a thread of its own; an outage is logged once (:data:`outages`)."""

    def __init__(self) -> None:
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
            outages.lost(alias, exc, "publish")
            return
        outages.back(alias, "publish")


publisher = _Publisher()


def publish_job_events(jobs: list[Any]) -> None:
    """Announce state or progress changes of ``jobs`` (already stored) to their subscribers."""
    alias = configured_alias()
    if alias and jobs:
        publisher.publish_soon(alias, job_messages(jobs))


def job_messages(jobs: Iterable[Any]) -> list[tuple[str, str]]:
    """Each job's event, and one wake-up per workflow that a step among them belongs to."""
    messages = [job_event(job) for job in jobs]
    workflows = {job.workflow_id for job in jobs if getattr(job, "workflow_id", None) is not None}
    return messages + [workflow_event(workflow_id) for workflow_id in sorted(workflows)]


def publish_workflow_events(workflows: Iterable[Any]) -> None:
    """Announce that these workflows (already stored) changed."""
    alias = configured_alias()
    messages = [workflow_event(workflow.pk, workflow.status) for workflow in workflows]
    if alias and messages:
        publisher.publish_soon(alias, messages)


def publish_enqueued(queue_names: Iterable[str]) -> None:
    """Wake the workers that hear enqueues from Redis (those that cannot LISTEN): jobs became due."""
    alias = configured_alias()
    names = sorted(queue_names)
    if alias and names:
        channel = enqueued_channel()
        publisher.publish_soon(alias, [(channel, name) for name in names])


def publish_after_commit(alias: str, queue_name: str, using: str) -> None:
    """Tell subscribers about a new job once (and only if) its transaction commits.

    The publish itself happens on the publisher thread, so ``enqueue()`` returns
    without waiting on Redis; enqueues close together go out as one command.
    """
    channel = enqueued_channel()
    transaction.on_commit(lambda: publisher.publish_soon(alias, [(channel, queue_name)]), using=using)


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

    jobs = (
        Job.objects.db_manager(using).filter(pk__in=job_ids).only("id", "status", "progress", "workflow_id")
    )
    publisher.publish_soon(alias, job_messages(list(jobs)))
