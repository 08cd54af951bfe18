"""The worker driven in-process: every state change, order, retries, timeouts, signals."""

import logging
from datetime import timedelta

import pytest
from django.tasks import TaskResultStatus
from django.tasks.exceptions import TaskResultMismatch
from django.tasks.signals import task_finished, task_started
from django.utils import timezone

from django_bourbon_jobs import dispatch_async, get_result
from django_bourbon_jobs.exceptions import JobTimeout, UnknownTask
from django_bourbon_jobs.models import Job, JobStatus, Worker
from tests import tasks
from tests.conftest import drain, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def job_of(result):
    return Job.objects.get(pk=result.id)


def test_a_job_runs_once_and_keeps_its_result():
    result = dispatch_async(tasks.send_welcome_email, {"email": "a@example.com"})
    worker = drain()
    job = job_of(result)
    assert job.status == JobStatus.SUCCEEDED
    assert job.return_value == {"sent_to": "a@example.com"}
    assert job.attempts == 1
    assert job.started_at <= job.finished_at
    assert job.worker_id == worker.worker_id
    assert job.lease_expires_at is None
    fresh = get_result(result.id)
    assert fresh.status == TaskResultStatus.SUCCESSFUL
    assert fresh.return_value == {"sent_to": "a@example.com"}
    assert fresh.worker_ids == [worker.worker_id]


def test_worker_row_exists_while_running_and_is_removed_after():
    seen = []

    def on_started(sender, task_result, **kwargs):
        seen.append(list(Worker.objects.all()))

    task_started.connect(on_started)
    try:
        tasks.echo.enqueue(1)
        drain()
    finally:
        task_started.disconnect(on_started)
    assert len(seen) == 1 and len(seen[0]) == 1
    assert not Worker.objects.exists()


def test_priority_first_then_oldest(tmp_path):
    path = str(tmp_path / "order")
    for n, priority in [(1, 0), (2, 5), (3, 0), (4, 5), (5, -3)]:
        dispatch_async(tasks.record, {"path": path, "n": n}, priority=priority)
    drain(threads=1, batch_size=2)
    assert open(path).read().split() == ["2", "4", "1", "3", "5"]


def test_run_after_is_honoured():
    later = dispatch_async(tasks.echo, "later", delay=3600)
    now = dispatch_async(tasks.echo, "now")
    drain()
    assert job_of(now).status == JobStatus.SUCCEEDED
    assert job_of(later).status == JobStatus.QUEUED
    future = timezone.now() + timedelta(hours=2)
    WorkerProcessAt(future).run()
    assert job_of(later).status == JobStatus.SUCCEEDED


def WorkerProcessAt(moment):
    from django_bourbon_jobs.worker.process import WorkerConfig, WorkerProcess

    return WorkerProcess(WorkerConfig(burst=True), now=lambda: moment)


def test_only_the_named_queues_are_claimed():
    email = tasks.send_welcome_email.enqueue({"email": "x@example.com"})
    other = tasks.echo.enqueue(1)
    drain(queues=frozenset({"emails"}))
    assert (job_of(email).status, job_of(other).status) == (JobStatus.SUCCEEDED, JobStatus.QUEUED)


def test_failures_are_retried_then_succeed(tmp_path):
    result = tasks.flaky.enqueue({"path": str(tmp_path / "n"), "succeed_on": 3})
    drain()
    job = job_of(result)
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 3)
    assert [e["exception_class_path"] for e in job.errors] == ["builtins.RuntimeError"] * 2
    assert [e["attempt"] for e in job.errors] == [1, 2]
    assert "attempt 1 fails" in job.errors[0]["traceback"]
    fresh = get_result(result.id)
    assert fresh.attempts == 3 and len(fresh.errors) == 2


def test_attempts_run_out_into_the_failed_state():
    result = tasks.always_fails.enqueue(None)
    drain()
    job = job_of(result)
    assert (job.status, job.attempts, len(job.errors)) == (JobStatus.FAILED, 2, 2)
    assert job.finished_at is not None
    assert get_result(result.id).status == TaskResultStatus.FAILED
    with pytest.raises(ValueError, match="Task failed"):
        _ = get_result(result.id).return_value


def test_backoff_delays_the_next_attempt():
    result = tasks.echo.enqueue(1)
    Job.objects.filter(pk=result.id).update(task_path="tests.tasks.asks_retry", args=[{"delay": 90}])
    before = timezone.now()
    drain()
    job = job_of(result)
    assert (job.status, job.attempts) == (JobStatus.QUEUED, 1)
    assert before + timedelta(seconds=90) <= job.due_at <= timezone.now() + timedelta(seconds=90)
    assert job.run_after is None  # as dispatched
    assert job.errors[0]["exception_class_path"] == "django_bourbon_jobs.exceptions.Retry"


def test_default_backoff_is_exponential_with_jitter(settings):
    settings.BOURBON_JOBS = {"BACKOFF_BASE": 10.0, "BACKOFF_MAX": 1000.0}
    from django_bourbon_jobs.retry import exponential_backoff

    class Result:
        def __init__(self, attempts):
            self.attempts = attempts

    for attempt, step in [(1, 10), (2, 20), (3, 40), (10, 1000)]:
        delays = {exponential_backoff(RuntimeError(), Result(attempt)) for _ in range(20)}
        assert all(step / 2 <= d <= step for d in delays)
        assert len(delays) > 1


def test_default_backoff_schedules_the_retry(settings):
    settings.BOURBON_JOBS = {"BACKOFF_BASE": 60.0}
    result = tasks.echo.enqueue(1)
    Job.objects.filter(pk=result.id).update(
        task_path="tests.tasks.fails_with_default_backoff", max_attempts=3
    )
    before = timezone.now()
    drain()
    job = job_of(result)
    assert job.status == JobStatus.QUEUED
    assert before + timedelta(seconds=30) <= job.due_at <= timezone.now() + timedelta(seconds=60)


def test_fail_exception_stops_at_once():
    result = tasks.fails_now.enqueue(None)
    drain()
    job = job_of(result)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
    assert job.errors[0]["exception_class_path"] == "django_bourbon_jobs.exceptions.Fail"
    assert job.errors[0]["message"] == "permanent problem"


def test_backoff_returning_none_stops_retrying():
    result = tasks.no_retry_backoff.enqueue(None)
    drain()
    assert (job_of(result).status, job_of(result).attempts) == (JobStatus.FAILED, 1)


def test_retry_exception_counts_towards_max_attempts():
    result = tasks.asks_retry.enqueue({"delay": 0})
    drain()
    job = job_of(result)
    assert (job.status, job.attempts, len(job.errors)) == (JobStatus.FAILED, 3, 3)


def test_non_json_return_value_fails_the_attempt_with_djangos_type_error():
    result = tasks.returns_set.enqueue(None)
    drain()
    job = job_of(result)
    assert job.status == JobStatus.FAILED
    error = job.errors[-1]
    assert error["exception_class_path"] == "builtins.TypeError"
    assert error["message"] == (
        "The return value of tests.tasks.returns_set cannot be stored as JSON: "
        "Unsupported type: <class 'set'>"
    )


def test_return_values_are_normalised_as_django_normalises_them():
    result = tasks.returns_bytes_and_tuples.enqueue(None)
    drain()
    result.refresh()
    assert result.return_value == {"text": "café", "pair": [1, [2, 3]]}


@pytest.mark.parametrize(
    "path", ["tests.tasks.no_such_task", "no_such_module.task", "tests.tasks.not_a_task"]
)
def test_unknown_task_path_fails_with_a_clear_error(path, settings):
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "DEFAULT_MAX_ATTEMPTS": 1}
    result = tasks.echo.enqueue(1)
    Job.objects.filter(pk=result.id).update(task_path=path, max_attempts=1)
    drain()
    job = job_of(result)
    assert job.status == JobStatus.FAILED
    assert job.errors[0]["exception_class_path"] == "django_bourbon_jobs.exceptions.UnknownTask"
    assert path in job.errors[0]["message"]


def test_overrunning_job_is_interrupted_and_recorded_as_timed_out():
    result = tasks.spins.enqueue({"seconds": 30})
    other = tasks.echo.enqueue("after")
    drain(threads=1)
    job = job_of(result)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
    assert job.errors[0]["exception_class_path"] == "django_bourbon_jobs.exceptions.JobTimeout"
    assert "timeout of 0.2s" in job.errors[0]["message"]
    assert job_of(other).status == JobStatus.SUCCEEDED


def test_context_gives_the_attempt_and_id():
    result = tasks.with_context.enqueue(None)
    drain()
    assert job_of(result).return_value == {"attempt": 1, "id": result.id}


def test_async_tasks_run():
    result = tasks.async_echo.enqueue({"a": [1, 2]})
    drain()
    assert job_of(result).return_value == {"a": [1, 2]}


def test_started_and_finished_signals_fire_once_per_job():
    events = []

    def on_started(sender, task_result, **kwargs):
        events.append(("started", task_result.id, task_result.status))

    def on_finished(sender, task_result, **kwargs):
        events.append(("finished", task_result.id, task_result.status))

    task_started.connect(on_started)
    task_finished.connect(on_finished)
    try:
        ok = tasks.echo.enqueue(1)
        bad = tasks.fails_now.enqueue(1)
        drain(threads=1)
    finally:
        task_started.disconnect(on_started)
        task_finished.disconnect(on_finished)
    assert sorted(events) == sorted(
        [
            ("started", ok.id, TaskResultStatus.RUNNING),
            ("finished", ok.id, TaskResultStatus.SUCCESSFUL),
            ("started", bad.id, TaskResultStatus.RUNNING),
            ("finished", bad.id, TaskResultStatus.FAILED),
        ]
    )


def enqueue_failing(kind):
    """A job that fails for good, and the exception class its last attempt ends with."""
    if kind == "raises":
        return tasks.always_fails.enqueue(None), ValueError
    if kind == "times out":
        return tasks.spins.enqueue({"seconds": 30}), JobTimeout
    result = tasks.echo.enqueue(1)
    Job.objects.filter(pk=result.id).update(task_path="tests.tasks.renamed_since", max_attempts=1)
    return result, UnknownTask


@pytest.mark.parametrize("kind", ["raises", "times out", "task gone"])
def test_djangos_error_log_for_a_failed_task_carries_the_exception(caplog, kind):
    """Django's `django.tasks` log receiver reads `sys.exc_info()`: `task_finished` is sent while handling."""
    caplog.set_level("INFO", logger="django.tasks")
    result, raised = enqueue_failing(kind)
    drain()
    logged = [r for r in caplog.records if r.name == "django.tasks" and result.id in r.getMessage()]
    [failed] = [r for r in logged if r.levelno == logging.ERROR]
    assert "state=FAILED" in failed.getMessage()
    assert failed.exc_info is not None and failed.exc_info[0] is raised
    assert failed.exc_info[1].__traceback__ is not None
    assert f"{raised.__name__}: " in caplog.text  # the formatted traceback


def test_one_log_line_per_state_change(caplog):
    """Django's ``django.tasks`` says enqueued, RUNNING and SUCCESSFUL; ours what Django has no words for.

    A final failure is on both: Django's line (with the traceback, where there is one) and ours
    with the reason and the structured fields.
    """
    caplog.set_level("DEBUG", logger="django_bourbon_jobs")
    caplog.set_level("DEBUG", logger="django.tasks")
    result = tasks.always_fails.enqueue(None)
    drain()
    lines = [
        (r.name, r.levelname, getattr(r, "event", None))
        for r in caplog.records
        if result.id in r.getMessage()
    ]
    assert lines == [
        ("django.tasks", "DEBUG", None),  # enqueued
        ("django.tasks", "INFO", None),  # RUNNING
        ("django_bourbon_jobs", "WARNING", "retrying"),
        ("django.tasks", "INFO", None),  # RUNNING
        ("django_bourbon_jobs", "ERROR", "failed"),
        ("django.tasks", "ERROR", None),  # FAILED
    ]
    retrying = next(r for r in caplog.records if getattr(r, "event", None) == "retrying")
    assert (retrying.exception_class, retrying.error) == ("builtins.ValueError", "this job always fails")
    assert (retrying.job_id, retrying.status, retrying.attempt) == (result.id, "queued", 1)


def test_many_threads_run_every_job_once(tmp_path):
    path = str(tmp_path / "runs")
    for n in range(300):
        tasks.record.enqueue({"path": path, "n": n})
    drain(threads=4, batch_size=16)
    runs = open(path).read().split()
    assert sorted(map(int, runs)) == list(range(300))
    assert Job.objects.succeeded().count() == 300


def test_max_jobs_stops_the_worker():
    for n in range(10):
        tasks.echo.enqueue(n)
    worker = drain(max_jobs=4, batch_size=32)
    assert worker.jobs_done == 4
    assert Job.objects.succeeded().count() == 4
    assert Job.objects.queued().filter(attempts=0).count() == 6


def test_timeout_fires_even_when_the_loop_polls_slowly(settings):
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "POLL_INTERVAL": 5.0}
    result = tasks.spins.enqueue({"seconds": 2})
    drain(threads=1)
    job = job_of(result)
    assert job.status == JobStatus.FAILED
    assert job.errors[0]["exception_class_path"] == "django_bourbon_jobs.exceptions.JobTimeout"


def test_claims_one_job_per_thread_until_the_queue_proves_deep():
    from django_bourbon_jobs.worker.process import WorkerConfig, WorkerProcess

    for n in range(5):
        tasks.echo.enqueue(n)
    worker = WorkerProcess(WorkerConfig(threads=1, batch_size=32))
    sizes = []
    for _ in range(3):
        sizes.append(worker.claimer.run_once())
        worker.pool.take_unstarted()
    assert sizes == [1, 2, 2]
    assert worker.claimer.sizer.size == 1, "a short claim resets to one per thread"


def test_cancel_stops_a_queued_job_only():
    from django_bourbon_jobs import cancel

    queued = tasks.echo.enqueue(1)
    finished = tasks.echo.enqueue(2)
    drain_only = Job.objects.filter(pk=finished.id)
    drain_only.update(status=JobStatus.SUCCEEDED)
    assert cancel(queued.id) is True
    assert cancel(queued.id) is False
    assert cancel(finished.id) is False
    assert cancel("not-a-uuid") is False
    job = job_of(queued)
    assert job.status == JobStatus.CANCELLED and job.finished_at is not None
    drain()
    assert job_of(queued).status == JobStatus.CANCELLED
    assert get_result(queued.id).status == TaskResultStatus.FAILED


def test_result_of_a_job_whose_task_was_removed_is_still_readable():
    result = tasks.echo.enqueue(1)
    Job.objects.filter(pk=result.id).update(task_path="tests.tasks.removed_long_ago", max_attempts=1)
    fresh = get_result(result.id)
    assert (fresh.status, fresh.args) == (TaskResultStatus.READY, [1])
    assert (fresh.task.module_path, fresh.task.name) == ("tests.tasks.removed_long_ago", "removed_long_ago")
    assert get_result(result.id) == fresh
    with pytest.raises(UnknownTask, match=r"tests\.tasks\.removed_long_ago"):
        fresh.task.call(1)
    with pytest.raises(TaskResultMismatch):
        tasks.echo.get_result(result.id)
    drain()  # the worker fails it, saying why; the result reads that too
    fresh.refresh()
    assert fresh.status == TaskResultStatus.FAILED
    assert fresh.errors[-1].exception_class is UnknownTask


def test_bulk_dispatched_jobs_run(tmp_path):
    from django_bourbon_jobs import dispatch_many

    path = str(tmp_path / "runs")
    dispatch_many(tasks.record, [{"path": path, "n": n} for n in range(200)])
    drain(threads=2)
    assert sorted(map(int, open(path).read().split())) == list(range(200))


def test_quick_jobs_have_their_outcomes_written_in_batches(monkeypatch):
    from django_bourbon_jobs.store import for_connection

    statements = []
    storage = for_connection("default")
    record = storage.record_outcomes

    def counting_record(using, worker_id, jobs):
        statements.append(len(jobs))
        return record(using, worker_id, jobs)

    monkeypatch.setattr(storage, "record_outcomes", counting_record)
    for n in range(64):
        dispatch_async(tasks.echo, n)
    drain(batch_size=32)
    assert Job.objects.succeeded().count() == 64
    assert sum(statements) == 64
    assert len(statements) <= 16, statements  # one per job would be 64


def test_a_job_that_ran_a_while_has_its_outcome_written_before_the_batch_ends(tmp_path):
    import threading

    from django.db import connection

    started, release = tmp_path / "started", tmp_path / "release"
    dispatch_async(tasks.echo, "first")  # a full claim of one: the next claim takes two
    # Ran 50 ms, with the default timeout (a short one would wake the loop by itself).
    slow = dispatch_async(
        tasks.wait_for_file,
        {"started": str(tmp_path / "slow"), "release": str(tmp_path / "never"), "seconds": 0.05},
    )
    blocked = dispatch_async(tasks.wait_for_file, {"started": str(started), "release": str(release)})

    # Batches of two, and no poll for 10 s: only the prompt write can store the slow job's outcome
    # while the blocking job (in the same batch) still runs.
    def work():
        try:
            drain(batch_size=2, poll_interval=10)
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    try:
        wait_until(started.exists, message="the blocking job to start")
        wait_until(
            lambda: Job.objects.get(pk=slow.id).status == JobStatus.SUCCEEDED,
            timeout=3,
            message="the slow job's outcome while the next job of its batch still runs",
        )
        assert Job.objects.get(pk=blocked.id).status == JobStatus.RUNNING
    finally:
        release.write_text("go")
        worker.join(timeout=30)
    assert Job.objects.get(pk=blocked.id).status == JobStatus.SUCCEEDED
