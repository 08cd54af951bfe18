"""Faults that are not a job's own: broken connections, unstorable output, a row the database refuses.

Each ends in a clear error or a safe retry, and the worker carries on; the
process-level faults (killed workers, a dead supervisor) are in
``test_process_faults.py``.
"""

import threading
from contextlib import contextmanager

import pytest
from django.db import connection, connections

from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.worker.process import OUTCOME_TRIES, WorkerConfig, WorkerProcess
from tests import tasks
from tests.conftest import drain, is_postgres, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

needs_postgres = pytest.mark.skipif("os.environ.get('BOURBON_TEST_DB') != 'postgres'", reason="PostgreSQL's")


def job_of(result):
    return Job.objects.get(pk=result.id)


# Deterministic failures: their side effects happened, another attempt would repeat them.


def test_a_return_value_that_is_not_json_fails_at_once_whatever_attempts_are_left():
    job = job_of(tasks.returns_set_retryable.enqueue(None))
    drain()
    job.refresh_from_db()
    assert (job.status, job.attempts, job.max_attempts) == (JobStatus.FAILED, 1, 3)
    assert "Unsupported type: <class 'set'>" in job.errors[0]["message"]


@pytest.mark.parametrize(
    "text, named", [("a\x00b", "a NUL character"), ("a\ud800b", "a lone surrogate")], ids=["nul", "surrogate"]
)
def test_a_return_value_the_database_cannot_store_fails_at_once_saying_why(text, named):
    job = job_of(tasks.returns_text.enqueue(escaped(text)))
    after = tasks.echo.enqueue("after")
    drain()
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
    assert job.errors[0]["exception_class_path"] == "django_bourbon_jobs.exceptions.InvalidReturnValue"
    assert named in job.errors[0]["message"]
    assert job.return_value is None
    assert job_of(after).status == JobStatus.SUCCEEDED


def escaped(text):
    return {"escaped": text.encode("unicode_escape").decode()}


SPELLED_OUT = {"\x00": "\\x00", "\ud800": "\\ud800"}


def spelled_out(text):
    for char, spelling in SPELLED_OUT.items():
        text = text.replace(char, spelling)
    return text


@pytest.mark.parametrize("text", ["boom\x00here", "boom\ud800here"], ids=["nul", "surrogate"])
def test_an_error_message_with_unstorable_text_is_stored_spelled_out(text):
    job = job_of(tasks.raises_text.enqueue(escaped(text)))
    drain()
    job.refresh_from_db()
    assert (job.status, job.attempts, len(job.errors)) == (JobStatus.FAILED, 2, 2)
    assert job.errors[0]["message"] == spelled_out(text)
    assert spelled_out(text) in job.errors[0]["traceback"]


@pytest.mark.parametrize("text", ["step\x00one", "step\ud800one"], ids=["nul", "surrogate"])
def test_progress_text_with_unstorable_characters_is_stored_spelled_out(text):
    job = job_of(tasks.reports_text.enqueue(escaped(text)))
    drain()
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.progress["message"] == spelled_out(text)


# One row the database refuses never holds back the others, nor the worker.


REFUSE_POISON_SQLITE = """
CREATE TRIGGER refuse_poison BEFORE UPDATE OF return_value ON bourbon_jobs_job
WHEN NEW.return_value = '"poison"' OR ({always} AND OLD.args = '["poison"]')
BEGIN SELECT RAISE(ABORT, 'this outcome is refused'); END
"""
REFUSE_POISON_POSTGRES = """
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.return_value = '"poison"'::jsonb OR ({always} AND OLD.args = '["poison"]'::jsonb) THEN
    RAISE EXCEPTION 'this outcome is refused' USING ERRCODE = '22023';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE UPDATE OF return_value ON bourbon_jobs_job
FOR EACH ROW EXECUTE FUNCTION refuse_poison();
"""


@pytest.fixture
def refuse_poison():
    """A real trigger in the database refuses the outcome ``"poison"`` (``always``: every write of it)."""

    def install(always: bool = False) -> None:
        sql = REFUSE_POISON_POSTGRES if is_postgres() else REFUSE_POISON_SQLITE
        with connection.cursor() as cursor:
            cursor.execute(
                sql.format(always=("TRUE" if always else "FALSE") if is_postgres() else int(always))
            )

    yield install
    with connection.cursor() as cursor:
        cursor.execute(
            "DROP TRIGGER IF EXISTS refuse_poison" + (" ON bourbon_jobs_job" if is_postgres() else "")
        )
        if is_postgres():
            cursor.execute("DROP FUNCTION IF EXISTS refuse_poison()")


def test_a_refused_outcome_fails_its_job_and_the_rest_of_the_batch_is_written(refuse_poison):
    refuse_poison()
    fine = [tasks.echo.enqueue(n).id for n in range(5)]
    poison = tasks.echo.enqueue("poison")
    later = [tasks.echo.enqueue(n).id for n in range(5, 10)]
    worker = drain(batch_size=32)
    assert Job.objects.filter(pk__in=fine + later, status=JobStatus.SUCCEEDED).count() == 10
    job = job_of(poison)
    assert (job.status, job.return_value) == (JobStatus.FAILED, None)
    assert job.errors[-1]["exception_class_path"] == "django_bourbon_jobs.exceptions.OutcomeNotStored"
    assert "this outcome is refused" in job.errors[-1]["message"]
    assert not worker.outcomes.write_failures and not worker.pool.busy()


def test_an_outcome_refused_every_time_is_given_up_after_bounded_tries(refuse_poison, caplog):
    refuse_poison(always=True)
    poison = tasks.echo.enqueue("poison")
    fine = tasks.echo.enqueue("fine")
    worker = drain()
    assert job_of(fine).status == JobStatus.SUCCEEDED
    assert job_of(poison).status == JobStatus.RUNNING, "left for the rescuer once its lease runs out"
    assert not worker.pool.busy() and worker.jobs_done == 2
    tries = [r for r in caplog.records if "writing" in r.getMessage() or "cannot be stored" in r.getMessage()]
    assert 1 <= len(tries) <= OUTCOME_TRIES + 1
    assert any("giving up job" in r.getMessage() for r in caplog.records)


# Connections are handled around every job as Django handles them around every request.


@needs_postgres
def test_an_attempt_whose_connection_was_cut_is_retried_uncharged(tmp_path):
    job = job_of(tasks.drops_own_connection_once.enqueue({"path": str(tmp_path / "dropped")}))
    wait_until(lambda: drain() and job_of(job).status != JobStatus.QUEUED, message="the retry, once due")
    job.refresh_from_db()
    assert (job.status, job.attempts, job.max_attempts) == (JobStatus.SUCCEEDED, 1, 1)
    [error] = job.errors
    assert error["charged"] is False and "terminat" in error["message"]
    assert len(job.worker_ids) == 1


@contextmanager
def worker_running_then_restart():
    """A worker in a thread that has run one job using the database; then every other connection dies."""
    worker = WorkerProcess(WorkerConfig(threads=1, poll_interval=0.05))
    thread = threading.Thread(target=lambda: (worker.run(), connections.close_all()))
    thread.start()
    try:
        first = tasks.counts_jobs.enqueue(None)
        wait_until(lambda: job_of(first).status == JobStatus.SUCCEEDED, message="first job")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert cursor.fetchone()[0] >= 2, "the job thread's connection and the worker's"
        yield
    finally:
        worker.request_stop()
        thread.join(30)


def run_after_the_restart(count):
    """Dispatch ``count`` jobs that use the database; their (status, attempts) once they end."""
    later = [tasks.counts_jobs.enqueue(None) for _ in range(count)]
    wait_until(
        lambda: all(job_of(r).status in (JobStatus.SUCCEEDED, JobStatus.FAILED) for r in later),
        message="the jobs after the drop",
    )
    return [(job_of(r).status, job_of(r).attempts) for r in later]


@needs_postgres
@pytest.mark.parametrize("health_checks", [False, True])
def test_jobs_run_after_every_connection_was_dropped_as_by_a_restart(monkeypatch, health_checks):
    """A kept connection (``CONN_MAX_AGE=None``) broken under an idle worker: the next job still runs."""
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", None)
    monkeypatch.setitem(connections.settings["default"], "CONN_HEALTH_CHECKS", health_checks)
    with worker_running_then_restart():
        assert run_after_the_restart(1) == [(JobStatus.SUCCEEDED, 1)]


@needs_postgres
def test_jobs_run_after_a_restart_with_psycopg_connection_pool(monkeypatch):
    """``OPTIONS["pool"]``: each job gives its connection back to the pool, which drops broken ones."""
    options = {**connections.settings["default"]["OPTIONS"], "pool": {"min_size": 2, "max_size": 4}}
    monkeypatch.setitem(connections.settings["default"], "OPTIONS", options)
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)
    try:
        with worker_running_then_restart():
            assert run_after_the_restart(3) == [(JobStatus.SUCCEEDED, 1)] * 3
    finally:
        pool = type(connections["default"])._connection_pools.pop("default", None)
        if pool is not None:
            pool.close()
