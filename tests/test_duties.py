"""The worker's periodic duties as units: each does its work in run_once() when it is due."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from django_bourbon_jobs.models import Job, JobStatus, Worker
from django_bourbon_jobs.store import for_connection
from django_bourbon_jobs.worker.duties import CancelRelay, Heartbeat
from django_bourbon_jobs.worker.executor import Executor, TimeoutWatch
from django_bourbon_jobs.worker.pool import ExecutorPool
from django_bourbon_jobs.worker.startlog import StartLog
from tests import tasks

pytestmark = pytest.mark.django_db


def held_job(worker_id: str, **fields: object) -> Job:
    now = timezone.now()
    values = {
        "status": JobStatus.RUNNING,
        "worker_id": worker_id,
        "lease_expires_at": now + timedelta(seconds=5),
    }
    return Job.objects.create(
        task_path=tasks.echo.module_path, run_after=now, enqueued_at=now, **{**values, **fields}
    )


def pool_holding(*jobs: Job, started: tuple[Job, ...] = ()) -> ExecutorPool:
    """A pool (its threads not started) that holds ``jobs``, of which ``started`` have begun."""
    watch = TimeoutWatch(grace=1.0)
    pool = ExecutorPool(Executor("w1", watch, timezone.now), 1, 60, StartLog(1, 1), lambda: None, bool)
    pool.hand_over(jobs, claimed_at=time.monotonic())
    for job in started:
        assert pool._begin(job)
    pool.take_unstarted()
    return pool


def test_heartbeat_renews_held_leases_and_the_worker_row_when_due():
    now = timezone.now()
    Worker.objects.create(
        pk="w1", hostname="h", pid=1, started_at=now, last_heartbeat_at=now - timedelta(hours=1)
    )
    mine, unstarted, rescued = held_job("w1"), held_job("w1"), held_job("w2")
    pool = pool_holding(mine, unstarted, rescued, started=(mine,))
    registered: list[object] = []
    beat = Heartbeat(
        store=for_connection("default"),
        using="default",
        worker_id="w1",
        every=60,
        lease=timedelta(seconds=600),
        now=timezone.now,
        pool=pool,
        register=registered.append,
    )
    assert beat.run_once() is True
    assert beat.run_once() is False, "not due again for a minute"
    assert pool._begin(unstarted), "a renewed lease: the job may start"
    assert not pool._begin(rescued), "the database gave it to another worker: it must not start"
    assert pool.take_declined() == [rescued]
    mine.refresh_from_db()
    assert mine.lease_expires_at > now + timedelta(seconds=500) and mine.attempt_started
    assert Job.objects.get(pk=rescued.pk).lease_expires_at < now + timedelta(seconds=10)
    assert not Job.objects.get(pk=unstarted.pk).attempt_started
    assert Worker.objects.get(pk="w1").last_heartbeat_at >= now
    Worker.objects.all().delete()
    beat.next_at = 0
    assert beat.run_once() and len(registered) == 1, "a pruned worker row is registered again"


def test_cancel_relay_tells_only_running_jobs_whose_cancel_was_requested():
    asked, left = held_job("w1", cancel_requested_at=timezone.now()), held_job("w1")
    watch = TimeoutWatch(grace=1.0)
    executor = Executor("w1", watch, timezone.now)
    flags = {pk: threading.Event() for pk in (asked.pk, left.pk)}
    executor.cancel_flags.update(flags)
    relay = CancelRelay("default", "w1", executor, watch, pool_holding(asked, left, started=(asked, left)))
    assert relay.run_once() == 1
    assert flags[asked.pk].is_set() and not flags[left.pk].is_set()
    assert relay.run_once() == 0, "checked at most twice a second"
    idle = CancelRelay("default", "w1", executor, watch, pool_holding(asked, left))
    assert idle.run_once() == 0
