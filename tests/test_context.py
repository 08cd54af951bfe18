"""Idempotent dispatch, progress reports, cooperative cancellation, and the job_finished signal."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from django_bourbon_jobs import dispatch_async
from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.operations import request_cancel
from django_bourbon_jobs.signals import job_finished
from tests import tasks
from tests.conftest import drain, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_same_key_same_dispatcher_returns_the_first_job(django_user_model):
    ada = django_user_model.objects.create_user("ada")
    bob = django_user_model.objects.create_user("bob")
    first = dispatch_async(tasks.echo, 1, dispatched_by=ada, idempotency_key="order-7")
    again = dispatch_async(tasks.echo, 2, dispatched_by=ada, idempotency_key="order-7")
    other_user = dispatch_async(tasks.echo, 3, dispatched_by=bob, idempotency_key="order-7")
    other_key = dispatch_async(tasks.echo, 4, dispatched_by=ada, idempotency_key="order-8")
    assert again.id == first.id
    assert len({first.id, other_user.id, other_key.id}) == 3
    assert Job.objects.count() == 3


def test_key_expires_with_the_window(django_user_model, settings):
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "IDEMPOTENCY_WINDOW": 60}
    ada = django_user_model.objects.create_user("ada")
    first = dispatch_async(tasks.echo, 1, dispatched_by=ada, idempotency_key="k")
    Job.objects.filter(pk=first.id).update(enqueued_at=timezone.now() - timedelta(minutes=2))
    assert dispatch_async(tasks.echo, 1, dispatched_by=ada, idempotency_key="k").id != first.id


def test_concurrent_dispatches_with_one_key_make_one_job(django_user_model):
    ada = django_user_model.objects.create_user("ada")
    barrier = threading.Barrier(4)
    ids, errors = [], []

    def dispatch():
        try:
            barrier.wait()
            ids.append(dispatch_async(tasks.echo, 1, dispatched_by=ada, idempotency_key="race").id)
        except Exception as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(ids) == 4 and len(set(ids)) == 1
    assert Job.objects.filter(idempotency_key="race").count() == 1


def test_progress_is_throttled_and_the_last_report_is_kept(settings):
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "PROGRESS_INTERVAL": 60}
    result = tasks.reports_progress.enqueue(None)
    drain()
    job = Job.objects.get(pk=result.id)
    assert job.return_value["current"] == 1, "only the first report was written while running"
    assert (job.progress["current"], job.progress["total"], job.progress["message"]) == (3, 3, "step 3")


def test_bad_progress_fails_the_attempt_clearly():
    result = tasks.reports_progress.enqueue(None)
    Job.objects.filter(pk=result.id).update(max_attempts=1)
    from django_bourbon_jobs.context import ProgressReporter

    with pytest.raises(TypeError, match="takes numbers"):
        ProgressReporter(Job.objects.get(pk=result.id), "w").report("half", None, "")


def run_worker_in_background():
    box = {}

    def target():
        try:
            box["worker"] = drain(threads=1)
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    return thread


@pytest.mark.parametrize("task", [tasks.stops_when_asked, tasks.ignores_cancel])
def test_a_running_job_asked_to_stop_ends_cancelled(task, tmp_path, settings):
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "TIMEOUT_GRACE": 0.3}
    started = tmp_path / "started"
    result = task.enqueue({"started": str(started)})
    finished = []

    def on_finished(sender, job, **kwargs):
        finished.append((str(job.pk), job.status))

    job_finished.connect(on_finished)
    try:
        thread = run_worker_in_background()
        wait_until(started.exists, message="job running")
        assert request_cancel(result.id) == "requested"
        assert request_cancel(result.id) == "requested"
        thread.join(30)
        assert not thread.is_alive()
    finally:
        job_finished.disconnect(on_finished)
    job = Job.objects.get(pk=result.id)
    assert (job.status, job.attempts, job.errors) == (JobStatus.CANCELLED, 1, [])
    assert finished == [(result.id, JobStatus.CANCELLED)]
    assert request_cancel(result.id) is None


def test_request_cancel_of_queued_unknown_and_malformed_ids():
    queued = tasks.echo.enqueue(1)
    assert request_cancel(queued.id) == "cancelled"
    assert Job.objects.get(pk=queued.id).status == JobStatus.CANCELLED
    assert request_cancel("01a20856-1b7d-79ea-ab93-c261e11612f5") is None
    assert request_cancel("nope") is None


def test_job_finished_is_sent_for_final_states_only():
    seen = []

    def on_finished(sender, job, **kwargs):
        seen.append(job.status)

    job_finished.connect(on_finished)
    try:
        tasks.echo.enqueue(1)
        tasks.always_fails.enqueue(None)
        drain()
    finally:
        job_finished.disconnect(on_finished)
    assert sorted(seen) == [JobStatus.FAILED, JobStatus.SUCCEEDED]
