"""``manage.py runworkers`` as a real supervisor with real child processes.

These start subprocesses because what they test is process-level: crashes,
signals, a job that will not stop. Every wait is on a condition with a deadline.
"""

import json
import os
import signal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from django_bourbon_jobs.models import Job, JobStatus, Worker
from tests import tasks
from tests.conftest import child_pids, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAST = json.dumps(
    {"LEASE_SECONDS": 2, "HEARTBEAT_SECONDS": 0.2, "RESCUE_INTERVAL": 0.2, "POLL_INTERVAL": 0.05}
)


def status_of(job_id):
    return Job.objects.get(pk=job_id).status


def blocking_job(tmp_path, **options):
    payload = {"started": str(tmp_path / "started"), "release": str(tmp_path / "release"), "seconds": 60}
    return (
        tasks.wait_for_file.using(**options).enqueue(payload),
        Path(payload["started"]),
        Path(payload["release"]),
    )


def test_two_processes_drain_2000_jobs_each_exactly_once(runworkers, tmp_path):
    path = tmp_path / "runs"
    for n in range(2000):
        tasks.record.enqueue({"path": str(path), "n": n})
    proc = runworkers("--processes", "2", "--burst")
    assert proc.wait(120) == 0, proc.output()
    runs = [int(line) for line in path.read_text().split()]
    assert len(runs) == 2000 and sorted(runs) == list(range(2000))
    assert Job.objects.succeeded().count() == 2000
    assert len(set(Job.objects.values_list("worker_id", flat=True))) == 2, "both processes should work"
    assert not Worker.objects.exists()


def test_an_alias_whose_backend_does_not_load_is_skipped_when_finding_redis(caplog):
    from django.test import override_settings

    from django_bourbon_jobs.events.redis_channels import configured_alias

    ours = {"BACKEND": "django_bourbon_jobs.backends.DatabaseBackend", "OPTIONS": {"REDIS": "jobs"}}
    with override_settings(TASKS={"elsewhere": {"BACKEND": "not_installed_here.Backend"}, "default": ours}):
        assert configured_alias() == "jobs"
    assert "TASKS['elsewhere'] cannot be loaded" in caplog.text
    assert configured_alias() is None  # TASKS changed back: worked out again


def test_an_alias_whose_backend_does_not_load_here_does_not_stop_the_workers(runworkers):
    """Django's own system check builds every alias, so such a worker image runs with --skip-checks."""
    result = tasks.echo.enqueue(1)
    proc = runworkers(
        "--processes", "1", "--burst", "--skip-checks",
        DJANGO_SETTINGS_MODULE="tests.settings_foreign_alias", BOURBON_TEST_LOG="1",
    )  # fmt: skip
    assert proc.wait(60) == 0, proc.output()
    assert status_of(result.id) == JobStatus.SUCCEEDED
    assert "TASKS['elsewhere'] cannot be loaded" in proc.output()


def test_sigkilled_child_is_replaced_and_its_job_finishes(runworkers, tmp_path):
    result, started, release = blocking_job(tmp_path)
    proc = runworkers("--processes", "1", BOURBON_TEST_SETTINGS=FAST)
    child = int(wait_until(lambda: started.exists() and started.read_text(), message="job start"))
    started.unlink()
    os.kill(child, signal.SIGKILL)
    new_child = int(wait_until(lambda: started.exists() and started.read_text(), message="second attempt"))
    assert new_child != child
    release.touch()
    wait_until(lambda: status_of(result.id) == JobStatus.SUCCEEDED, message="job success")
    job = Job.objects.get(pk=result.id)
    assert job.attempts == 2
    assert [e["exception_class_path"] for e in job.errors] == ["django_bourbon_jobs.exceptions.WorkerLost"]
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.output()


def test_whole_host_killed_job_returns_after_its_lease(runworkers, tmp_path):
    result, started, release = blocking_job(tmp_path)
    first = runworkers("--processes", "1", BOURBON_TEST_SETTINGS=FAST)
    wait_until(started.exists, message="job start")
    wait_until(
        lambda: Job.objects.filter(pk=result.id, attempt_started=True).exists(),
        message="a heartbeat reports the start (a job not reported started would get its attempt back)",
    )
    first.stop()  # SIGKILL to supervisor and child alike: nobody is left to rescue at once
    assert status_of(result.id) == JobStatus.RUNNING
    release.touch()
    second = runworkers("--processes", "1", BOURBON_TEST_SETTINGS=FAST)
    wait_until(lambda: status_of(result.id) == JobStatus.SUCCEEDED, message="rescue after lease expiry")
    job = Job.objects.get(pk=result.id)
    assert job.attempts == 2
    assert "lease expired" in job.errors[0]["message"]
    second.signal(signal.SIGTERM)
    assert second.wait(30) == 0, second.output()


def test_sigterm_finishes_running_jobs_and_returns_unstarted_ones(runworkers, tmp_path):
    result, started, release = blocking_job(tmp_path, priority=10)
    others = [tasks.echo.enqueue(n).id for n in range(20)]
    proc = runworkers("--processes", "1", "--threads", "1", "--batch-size", "32", "--grace", "30")
    wait_until(started.exists, message="blocking job start")
    wait_until(
        lambda: Job.objects.filter(pk__in=others, status=JobStatus.RUNNING).exists(),
        message="a prefetched job claimed but not started",
    )
    proc.signal(signal.SIGTERM)
    wait_until(
        lambda: (
            Job.objects.filter(pk__in=others, status=JobStatus.QUEUED, attempts=0, worker_id="").count() == 20
        ),
        message="unstarted jobs handed back",
    )
    assert status_of(result.id) == JobStatus.RUNNING
    release.touch()
    assert proc.wait(30) == 0, proc.output()
    assert status_of(result.id) == JobStatus.SUCCEEDED
    assert Job.objects.count() == 21
    assert not Job.objects.running().exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_past_the_grace_period_requeues_the_running_job(runworkers, tmp_path, signum):
    result, started, _ = blocking_job(tmp_path)
    proc = runworkers("--processes", "1", "--grace", "0.5")
    wait_until(started.exists, message="job start")
    proc.signal(signum)
    assert proc.wait(30) == 0, proc.output()
    job = Job.objects.get(pk=result.id)
    assert (job.status, job.attempts) == (JobStatus.QUEUED, 1)
    assert "grace period" in job.errors[0]["message"]


def test_job_that_ignores_its_timeout_gets_its_process_replaced(runworkers):
    stuck = tasks.sleeps.enqueue({"seconds": 60})
    proc = runworkers("--processes", "1", "--burst", BOURBON_TEST_SETTINGS=json.dumps({"TIMEOUT_GRACE": 0.2}))
    wait_until(lambda: status_of(stuck.id) == JobStatus.FAILED, timeout=30, message="timeouts recorded")
    after = tasks.echo.enqueue("slot recovered")
    assert proc.wait(60) == 0, proc.output()
    job = Job.objects.get(pk=stuck.id)
    assert job.attempts == 2
    assert {e["exception_class_path"] for e in job.errors} == {"django_bourbon_jobs.exceptions.JobTimeout"}
    if status_of(after.id) != JobStatus.SUCCEEDED:
        again = runworkers("--processes", "1", "--burst")
        assert again.wait(60) == 0
    assert status_of(after.id) == JobStatus.SUCCEEDED


@pytest.mark.skipif(
    "os.environ.get('BOURBON_TEST_DB') != 'postgres'", reason="connection drops are PostgreSQL's"
)
def test_worker_survives_its_database_connections_being_dropped(runworkers):
    proc = runworkers("--processes", "1", BOURBON_TEST_SETTINGS=FAST)
    first = tasks.echo.enqueue("before")
    wait_until(lambda: status_of(first.id) == JobStatus.SUCCEEDED, message="first job")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 2, "the worker's and its listener's connections"
    second = tasks.echo.enqueue("after")
    wait_until(lambda: status_of(second.id) == JobStatus.SUCCEEDED, message="job after the drop")
    assert Job.objects.get(pk=second.id).attempts == 1
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.output()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--processes", "0"], "--processes must be at least 1"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--grace", "-1"], "--grace must not be negative"),
    ],
)
def test_bad_options_are_refused(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("runworkers", *args)


def test_child_pids_helper_sees_children(runworkers, tmp_path):
    _, started, release = blocking_job(tmp_path)
    proc = runworkers("--processes", "2", BOURBON_TEST_SETTINGS=FAST)
    wait_until(started.exists, message="job start")
    assert len(child_pids(proc.process.pid)) == 2
    release.touch()
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_burst_with_max_jobs_recycles_processes_until_drained(runworkers):
    ids = [tasks.echo.enqueue(n).id for n in range(10)]
    proc = runworkers("--processes", "1", "--burst", "--max-jobs", "3")
    assert proc.wait(60) == 0, proc.output()
    assert Job.objects.filter(pk__in=ids, status=JobStatus.SUCCEEDED).count() == 10
    assert len(set(Job.objects.values_list("worker_id", flat=True))) == 4


@pytest.mark.skipif("os.environ.get('BOURBON_TEST_DB') != 'postgres'", reason="LISTEN/NOTIFY is PostgreSQL's")
def test_idle_workers_wake_on_notify_not_on_the_poll_interval(runworkers):
    slow_poll = json.dumps({"POLL_INTERVAL": 60, "RESCUE_INTERVAL": 60})
    proc = runworkers("--processes", "1", BOURBON_TEST_SETTINGS=slow_poll)
    wait_until(lambda: Worker.objects.exists(), message="worker registered")
    warm = tasks.echo.enqueue("warm-up")
    wait_until(lambda: status_of(warm.id) == JobStatus.SUCCEEDED, timeout=10, message="first job")
    for n in range(3):
        result = tasks.echo.enqueue(n)
        wait_until(
            lambda r=result: status_of(r.id) == JobStatus.SUCCEEDED, timeout=5, message="NOTIFY wake-up"
        )
        job = Job.objects.get(pk=result.id)
        assert (job.started_at - job.enqueued_at).total_seconds() < 5
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.output()


def test_without_logging_settings_it_says_what_it_does(runworkers):
    """A banner, each retry and failure with its reason, one line per change, and a last line."""
    tasks.echo.enqueue(1)
    failing = tasks.always_fails.enqueue(None)
    proc = runworkers("--processes", "1", "--burst", DJANGO_SETTINGS_MODULE="tests.settings_nolog")
    assert proc.wait(60) == 0, proc.output()
    lines = proc.output().splitlines()
    vendor = connection.vendor
    assert lines[0].startswith(
        f"django-bourbon-jobs 0.1.0: 1 process x 1 thread, database 'default' ({vendor} "
    )
    assert "queues: every queue; --burst" in lines[0]
    retrying = [line for line in lines if "event=retrying" in line]
    assert len(retrying) == 1 and f"job_id={failing.id}" in retrying[0]
    assert "WARNING" in retrying[0] and "exception_class=builtins.ValueError" in retrying[0]
    assert "error='this job always fails'" in retrying[0]
    failed = [line for line in lines if "event=failed" in line]
    assert len(failed) == 1 and "ERROR" in failed[0] and "exception_class=builtins.ValueError" in failed[0]
    assert not [line for line in lines if "INFO" in line], "-v 1 shows warnings and errors only"
    assert lines[-1].startswith("runworkers stopped after ")


def test_at_verbosity_2_each_start_and_end_is_one_line(runworkers):
    result = tasks.echo.enqueue(1)
    proc = runworkers("--processes", "1", "--burst", "-v", "2", DJANGO_SETTINGS_MODULE="tests.settings_nolog")
    assert proc.wait(60) == 0, proc.output()
    about_the_job = [line for line in proc.output().splitlines() if result.id in line]
    assert len(about_the_job) == 2, about_the_job
    assert "state=RUNNING" in about_the_job[0] and "state=SUCCESSFUL" in about_the_job[1]


def test_at_verbosity_2_a_failure_is_one_line_too(runworkers):
    failing = tasks.fails_now.enqueue(None)
    proc = runworkers("--processes", "1", "--burst", "-v", "2", DJANGO_SETTINGS_MODULE="tests.settings_nolog")
    assert proc.wait(60) == 0, proc.output()
    about_the_job = [line for line in proc.output().splitlines() if failing.id in line]
    assert len(about_the_job) == 2, about_the_job
    assert "state=RUNNING" in about_the_job[0]
    assert "event=failed" in about_the_job[1] and "error='permanent problem'" in about_the_job[1]
