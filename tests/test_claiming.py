"""The store's worker side (claim, lease renewal, outcomes, release) and the rescue, under concurrency.

The store contract for the worker: runs against the store of each database the
suite runs on (``PostgresStore`` on PostgreSQL, ``PortableStore`` on SQLite).
"""

import sys
import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from django_bourbon_jobs import dispatch_async
from django_bourbon_jobs.exceptions import WorkerLost
from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.retry import REFUNDS_PER_JOB
from django_bourbon_jobs.store import for_connection
from django_bourbon_jobs.worker import maintenance
from django_bourbon_jobs.worker.startlog import StartLog
from tests import tasks
from tests.conftest import drain, is_postgres

pytestmark = pytest.mark.django_db(transaction=True)


def claim(worker_id="w1", limit=10, queues=(), now=None, lease=60):
    now = now or timezone.now()
    return for_connection("default").claim(
        using="default",
        worker_id=worker_id,
        queues=frozenset(queues),
        limit=limit,
        now=now,
        lease_until=now + timedelta(seconds=lease),
    )


def reported_started(jobs):
    """What a heartbeat does for jobs whose code has started (``extend_leases(started=...)``)."""
    Job.objects.filter(pk__in=[job.pk for job in jobs]).update(attempt_started=True)
    return jobs


def in_thread(fn):
    """Run ``fn`` on its own database connection and return its result."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001  (re-raised in the test's thread)
            box["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "thread did not finish"
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_claim_marks_jobs_running_under_a_lease():
    result = tasks.echo.enqueue(1)
    now = timezone.now()
    [job] = claim("worker-a", now=now, lease=30)
    assert str(job.pk) == result.id
    stored = Job.objects.get(pk=job.pk)
    assert (stored.status, stored.attempts, stored.worker_id) == (JobStatus.RUNNING, 1, "worker-a")
    assert stored.lease_expires_at == now + timedelta(seconds=30)
    assert stored.started_at == stored.last_attempted_at == now
    assert claim("worker-b") == []


def test_claim_respects_limit_queue_and_run_after():
    for n in range(5):
        tasks.echo.enqueue(n)
    tasks.send_welcome_email.enqueue({"email": "e"})
    dispatch_async(tasks.echo, "later", delay=600)
    assert len(claim(limit=2, queues=["default"])) == 2
    assert [j.queue_name for j in claim(limit=10, queues=["emails"])] == ["emails"]
    assert len(claim(limit=10)) == 3
    assert claim(limit=10) == []
    assert len(claim(limit=10, now=timezone.now() + timedelta(hours=1))) == 1


def test_concurrent_claimers_never_share_a_job():
    ids = {tasks.echo.enqueue(n).id for n in range(400)}
    start = threading.Barrier(4)
    each_has_claimed = threading.Barrier(4)
    claimed: list[list[str]] = [[] for _ in range(4)]

    def claimer(i):
        def run():
            start.wait()
            claimed[i].extend(str(job.pk) for job in claim(f"w{i}", limit=7))
            # SQLite's writer lock is not fair: a claimer that has just committed may win every
            # later round. Waiting here until each has claimed once makes the contention certain.
            each_has_claimed.wait(timeout=30)
            while batch := claim(f"w{i}", limit=7):
                claimed[i].extend(str(job.pk) for job in batch)
            return len(claimed[i])

        return run

    threads = [threading.Thread(target=lambda i=i: in_thread(claimer(i))) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    everything = [job_id for batch in claimed for job_id in batch]
    assert len(everything) == len(set(everything)) == 400
    assert set(everything) == ids
    assert all(claimed), "every claimer should have taken a share of the work"


def test_workers_never_see_a_job_before_its_transaction_commits():
    with transaction.atomic():
        result = tasks.echo.enqueue(1)
        assert in_thread(lambda: Job.objects.queued().count()) == 0
        if is_postgres():
            assert in_thread(lambda: claim("other")) == []
    [job] = in_thread(lambda: claim("other"))
    assert str(job.pk) == result.id


def test_release_puts_back_unstarted_jobs_without_counting_an_attempt():
    tasks.echo.enqueue(1)
    [job] = claim("w1")
    assert for_connection("default").release("default", "someone-else", [job.pk]) == 0
    assert for_connection("default").release("default", "w1", [job.pk]) == 1
    stored = Job.objects.get(pk=job.pk)
    assert (stored.status, stored.attempts, stored.worker_id, stored.lease_expires_at) == (
        JobStatus.QUEUED,
        0,
        "",
        None,
    )


def test_heartbeat_extends_only_the_workers_own_leases():
    tasks.echo.enqueue(1)
    tasks.echo.enqueue(2)
    [mine] = claim("w1", limit=1)
    [theirs] = claim("w2", limit=1)
    until = timezone.now() + timedelta(hours=1)
    assert for_connection("default").extend_leases(using="default", worker_id="w1", until=until) == [mine.pk]
    assert Job.objects.get(pk=mine.pk).lease_expires_at == until
    assert Job.objects.get(pk=theirs.pk).lease_expires_at != until


def test_expired_lease_is_rescued_and_the_attempt_counts():
    result = tasks.echo.enqueue("survives")
    reported_started(claim("dead-worker", lease=-60))
    tasks.echo.enqueue("live")
    [live] = claim("live-worker")
    assert maintenance.rescue_expired_leases(timezone.now()) == 1
    job = Job.objects.get(pk=result.id)
    assert (job.status, job.attempts) == (JobStatus.QUEUED, 1)
    assert job.errors[0]["exception_class_path"] == "django_bourbon_jobs.exceptions.WorkerLost"
    assert job.errors[0]["worker_id"] == "dead-worker"
    assert Job.objects.get(pk=live.pk).status == JobStatus.RUNNING
    drain(queues=frozenset({"default"}))
    job.refresh_from_db()
    assert (job.status, job.attempts, job.return_value) == (JobStatus.SUCCEEDED, 2, "survives")
    assert job.worker_ids[0] == "dead-worker"


def test_rescue_with_no_attempts_left_dead_letters_the_job():
    result = tasks.always_fails.enqueue(None)
    Job.objects.filter(pk=result.id).update(attempts=1)
    reported_started(claim("dead-worker", lease=-60))
    maintenance.rescue_expired_leases(timezone.now())
    job = Job.objects.get(pk=result.id)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 2)


def test_a_rescued_job_its_worker_never_reported_started_gets_its_attempt_back():
    result = tasks.echo.enqueue("prefetched")
    Job.objects.filter(pk=result.id).update(max_attempts=1)
    claim("frozen-worker", lease=-60)
    assert maintenance.rescue_expired_leases(timezone.now()) == 1
    job = Job.objects.get(pk=result.id)
    assert (job.status, job.attempts, job.attempt_started) == (JobStatus.QUEUED, 0, False)
    [error] = job.errors
    assert error["charged"] is False and "not counted" in error["message"]
    drain()
    job.refresh_from_db()
    assert (job.status, job.attempts, job.worker_ids) == (JobStatus.SUCCEEDED, 1, [job.worker_id])


def test_attempts_given_back_by_rescues_are_bounded():
    result = tasks.echo.enqueue("poison for its host")
    refunded = {"exception_class_path": "x.WorkerLost", "message": "m", "traceback": "", "charged": False}
    Job.objects.filter(pk=result.id).update(max_attempts=1, errors=[refunded] * REFUNDS_PER_JOB)
    claim("lost-host", lease=-60)
    maintenance.rescue_expired_leases(timezone.now())
    job = Job.objects.get(pk=result.id)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
    assert job.errors[-1].get("charged", True) is True


def test_rescue_of_a_known_dead_worker_does_not_wait_for_the_lease():
    result = tasks.echo.enqueue(1)
    [job] = claim("gone", lease=3600)
    log = StartLog(threads=1, batch_size=1)
    log.record(0, job.pk)  # its code was running when the process died
    assert maintenance.settle_dead_worker("gone", log, "killed", timezone.now()) == 1
    assert Job.objects.get(pk=result.id).status == JobStatus.QUEUED


def test_outcomes_are_not_written_over_a_job_another_worker_now_holds():
    result = tasks.echo.enqueue(1)
    [job] = claim("w1")
    Job.objects.filter(pk=job.pk).update(worker_id="w2")
    job.mark_succeeded("stale", timezone.now())
    assert for_connection("default").record_outcomes("default", "w1", [job]) == 0
    assert Job.objects.get(pk=result.id).status == JobStatus.RUNNING


def test_rescue_that_dead_letters_sends_task_finished():
    from django.tasks.signals import task_finished

    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append((task_result.id, task_result.status, sys.exc_info()[1]))

    result = tasks.echo.enqueue(1)
    Job.objects.filter(pk=result.id).update(max_attempts=1)
    reported_started(claim("dead", lease=-60))
    task_finished.connect(receiver)
    try:
        maintenance.rescue_expired_leases(timezone.now())
    finally:
        task_finished.disconnect(receiver)
    [(job_id, status, handled)] = seen
    assert (job_id, status) == (result.id, "FAILED")
    assert isinstance(handled, WorkerLost), "sent while the failure is handled, as Django's backends do"
    assert "lease expired" in str(handled)


def test_the_workers_statements_pass_through_djangos_execute_wrappers():
    seen = []

    def spy(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    dispatch_async(tasks.echo, "hello")
    with connection.execute_wrapper(spy):
        drain()
    assert Job.objects.succeeded().count() == 1
    job_updates = [sql for sql in seen if sql.startswith("UPDATE bourbon_jobs_job SET status")]
    assert any("RETURNING" in sql for sql in job_updates), seen  # the claim
    assert any("lease_expires_at = NULL" in sql for sql in job_updates), seen  # the outcome


def test_the_heartbeat_returns_the_jobs_still_held_and_marks_those_started():
    first, second = tasks.echo.enqueue(1), tasks.echo.enqueue(2)
    tasks.echo.enqueue("other")
    claim("w1", limit=2)
    claim("w2")
    until = timezone.now() + timedelta(seconds=60)
    held = for_connection("default").extend_leases(
        using="default", worker_id="w1", until=until, started=[uuid.UUID(first.id)]
    )
    assert sorted(map(str, held)) == sorted([first.id, second.id])
    started = {str(pk) for pk in Job.objects.filter(attempt_started=True).values_list("pk", flat=True)}
    assert started == {first.id}
    Job.objects.filter(pk=first.id).update(status=JobStatus.QUEUED)
    [again] = claim("w3")
    assert str(again.pk) == first.id and Job.objects.get(pk=first.id).attempt_started is False
