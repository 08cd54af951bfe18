"""Retention: finished jobs older than their status's retention go, in bounded batches."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.worker import maintenance
from tests import tasks

pytestmark = pytest.mark.django_db(transaction=True)

DAY = timedelta(days=1)


def make(status, finished_days_ago, n=1):
    ids = [tasks.echo.enqueue(i).id for i in range(n)]
    finished_at = None if finished_days_ago is None else timezone.now() - finished_days_ago * DAY
    Job.objects.filter(pk__in=ids).update(status=status, finished_at=finished_at)
    return ids


def test_each_status_keeps_its_own_retention(settings):
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "RETENTION": {"succeeded": 86400, "failed": None}}
    old_ok = make(JobStatus.SUCCEEDED, 2)
    new_ok = make(JobStatus.SUCCEEDED, 0.5)
    old_failed = make(JobStatus.FAILED, 400)
    old_cancelled = make(JobStatus.CANCELLED, 8)
    queued = make(JobStatus.QUEUED, None)
    assert maintenance.prune_finished(timezone.now()) == 2
    remaining = set(map(str, Job.objects.values_list("pk", flat=True)))
    assert remaining == set(new_ok + old_failed + queued)
    assert not remaining & set(old_ok + old_cancelled)


def test_pruning_goes_in_bounded_batches(settings):
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "PRUNE_BATCH": 7}
    make(JobStatus.SUCCEEDED, 30, n=20)
    assert maintenance.prune_batch(JobStatus.SUCCEEDED, timezone.now(), 7) == 7
    assert maintenance.prune_finished(timezone.now(), max_batches=1) == 7
    assert Job.objects.count() == 6
    assert maintenance.prune_finished(timezone.now()) == 6
    assert not Job.objects.exists()


def test_prunejobs_command_catches_up(settings, capsys):
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "PRUNE_BATCH": 3}
    make(JobStatus.FAILED, 31, n=10)
    call_command("prunejobs")
    assert "Deleted 10 finished job(s)." in capsys.readouterr().out
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    "retention, words",
    [([], "must be a dict"), ({"done": 5}, "unknown statuses"), ({"failed": -1}, "['failed']")],
)
def test_bad_retention_is_reported(retention, words):
    from django_bourbon_jobs.conf import validate

    [(check_id, message)] = validate({"RETENTION": retention})
    assert check_id == "bourbon_jobs.E002" and words in message


def test_the_supervisors_pruner_does_a_bounded_pass_when_due(settings):
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "PRUNE_BATCH": 2}
    make(JobStatus.SUCCEEDED, 30, n=25)
    pruner = maintenance.Pruner("default", every=3600)
    assert pruner.run_once(timezone.now()) == 2 * maintenance.PRUNE_BATCHES_PER_PASS
    assert pruner.run_once(timezone.now()) == 0, "not due again for an hour"
    pruner.next_at = 0
    assert pruner.run_once(timezone.now()) == 25 - 2 * maintenance.PRUNE_BATCHES_PER_PASS
    assert not Job.objects.exists()


def test_the_supervisors_rescuer_requeues_expired_leases_when_due():
    [job_id] = make(JobStatus.QUEUED, None)
    past = timezone.now() - timedelta(minutes=5)
    Job.objects.filter(pk=job_id).update(
        status=JobStatus.RUNNING, worker_id="gone", attempts=1, lease_expires_at=past
    )
    rescuer = maintenance.Rescuer("default", every=3600)
    assert rescuer.run_once(timezone.now()) == 1
    assert Job.objects.get(pk=job_id).status == JobStatus.QUEUED
    Job.objects.filter(pk=job_id).update(status=JobStatus.RUNNING, worker_id="gone", lease_expires_at=past)
    assert rescuer.run_once(timezone.now()) == 0, "not due again for an hour"
