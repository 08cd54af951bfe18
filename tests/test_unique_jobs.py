"""Unique jobs: one job per (task, unique_key) in scope, enforced by partial unique constraints."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_bourbon_jobs import dispatch_async, retry_jobs
from django_bourbon_jobs.dispatch import dispatch_many
from django_bourbon_jobs.models import Job, JobStatus
from tests import tasks
from tests.conftest import ROOT, drain, is_postgres, subprocess_env, wait_until

pytestmark = pytest.mark.django_db


def inserts(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if "INSERT" in q["sql"].upper()]


def test_a_second_dispatch_returns_the_first_job_and_writes_nothing():
    first = dispatch_async(tasks.echo, "a", unique_key="sync-user-42")
    with CaptureQueriesContext(connection) as queries:
        second = dispatch_async(tasks.echo, "b", unique_key="sync-user-42")
    assert second.id == first.id and second.args == ["a"]
    assert not inserts(queries) and len(queries.captured_queries) == 1, "one read"
    assert Job.objects.count() == 1


def test_other_keys_and_other_tasks_are_other_jobs():
    ids = {
        dispatch_async(tasks.echo, 1, unique_key="k1").id,
        dispatch_async(tasks.echo, 2, unique_key="k2").id,
        dispatch_async(tasks.record, {"path": "/dev/null", "n": 1}, unique_key="k1").id,
        dispatch_async(tasks.echo, 3).id,
        dispatch_async(tasks.echo, 4).id,
    }
    assert len(ids) == 5


def test_active_scope_holds_while_queued_or_running_and_frees_the_key_when_finished():
    first = dispatch_async(tasks.echo, "a", unique_key="k")
    Job.objects.filter(pk=first.id).update(status=JobStatus.RUNNING, started_at=timezone.now())
    assert dispatch_async(tasks.echo, "b", unique_key="k").id == first.id
    Job.objects.filter(pk=first.id).update(status=JobStatus.SUCCEEDED, finished_at=timezone.now())
    assert dispatch_async(tasks.echo, "c", unique_key="k").id != first.id


def test_queued_scope_holds_only_until_a_worker_takes_the_job():
    first = tasks.rebuild_index.enqueue()
    assert tasks.rebuild_index.enqueue().id == first.id
    Job.objects.filter(pk=first.id).update(status=JobStatus.RUNNING, started_at=timezone.now())
    second = tasks.rebuild_index.enqueue()
    assert second.id != first.id
    assert dispatch_async(tasks.rebuild_index, None).id == second.id
    assert Job.objects.get(pk=second.id).unique_while == "queued"


def test_a_dispatch_can_choose_the_scope():
    first = dispatch_async(tasks.echo, "a", unique_key="k", unique_while="queued")
    Job.objects.filter(pk=first.id).update(status=JobStatus.RUNNING, started_at=timezone.now())
    assert dispatch_async(tasks.echo, "b", unique_key="k", unique_while="queued").id != first.id


def test_the_task_derives_its_key_from_the_arguments_for_enqueue_and_dispatch_alike():
    first = tasks.sync_user.enqueue({"user": 42})
    assert dispatch_async(tasks.sync_user, {"user": 42, "extra": 1}).id == first.id
    assert tasks.sync_user.enqueue({"user": 7}).id != first.id
    assert Job.objects.get(pk=first.id).unique_key == "sync-user-42"
    assert tasks.sync_user.enqueue({}).id != tasks.sync_user.enqueue({}).id, "no key, not unique"


def test_a_dispatch_key_takes_the_place_of_the_tasks():
    first = dispatch_async(tasks.sync_user, {"user": 42}, unique_key="all-users")
    assert dispatch_async(tasks.sync_user, {"user": 7}, unique_key="all-users").id == first.id


def test_the_key_is_freed_once_the_worker_has_run_the_job():
    first = dispatch_async(tasks.echo, "a", unique_key="k")
    drain()
    assert Job.objects.get(pk=first.id).status == JobStatus.SUCCEEDED
    assert dispatch_async(tasks.echo, "b", unique_key="k").id != first.id


@pytest.mark.parametrize(
    "options, error, words",
    [
        ({"unique_key": 42}, TypeError, "must be a string"),
        ({"unique_key": "k", "unique_while": "sometimes"}, ValueError, "unique_while must be one of"),
        ({"unique_key": "x" * 256}, TypeError, "at most 255"),
    ],
)
def test_bad_unique_options_are_refused(options, error, words):
    with pytest.raises(error, match=words):
        dispatch_async(tasks.echo, "a", **options)
    assert not Job.objects.exists()


def test_fan_out_refuses_unique_jobs():
    with pytest.raises(TypeError, match="unique_key"):
        dispatch_many(tasks.echo, [1, 2], unique_key="k")
    with pytest.raises(TypeError, match="one at a time"):
        dispatch_many(tasks.sync_user, [{"user": 1}])
    assert not Job.objects.exists()


def test_retry_leaves_a_failed_job_whose_key_is_held_by_another():
    failed = dispatch_async(tasks.echo, "old", unique_key="k")
    Job.objects.filter(pk=failed.id).update(status=JobStatus.FAILED, finished_at=timezone.now())
    twin = dispatch_async(tasks.echo, "old twin", unique_key="k")
    Job.objects.filter(pk=twin.id).update(status=JobStatus.FAILED, finished_at=timezone.now())
    holder = dispatch_async(tasks.echo, "new", unique_key="k")
    assert retry_jobs(Job.objects.filter(pk__in=[failed.id, twin.id])) == 0
    Job.objects.filter(pk=holder.id).update(status=JobStatus.SUCCEEDED, finished_at=timezone.now())
    assert retry_jobs(Job.objects.filter(pk__in=[failed.id, twin.id])) == 1, "one of the two takes the key"
    assert Job.objects.holding("tests.tasks.echo", "k", "active").count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    "os.environ.get('BOURBON_TEST_DB') != 'postgres'", reason="concurrent writers: PostgreSQL"
)
def test_threads_racing_on_one_key_get_one_job():
    assert is_postgres()
    barrier, ids, errors = threading.Barrier(8), [], []

    def dispatch() -> None:
        try:
            barrier.wait(10)
            ids.append(dispatch_async(tasks.echo, "x", unique_key="race").id)
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=dispatch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and len(ids) == 8 and len(set(ids)) == 1
    assert Job.objects.count() == 1


DISPATCHER = """
import json, sys, time
from pathlib import Path
import django
django.setup()
from django_bourbon_jobs import dispatch_async
from tests import tasks
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.write_text("ready")
while not go.exists():
    time.sleep(0.001)
print(json.dumps({k: dispatch_async(tasks.echo, k, unique_key=f"key-{k}").id for k in range(30)}))
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_processes_dispatching_the_same_keys_at_once_get_one_job_per_key(tmp_path):
    """Six processes, each its own connection, dispatch the same 30 keys in the same order at once."""
    connection.close()
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", DISPATCHER, str(tmp_path / f"ready{n}"), str(go)],
            cwd=ROOT,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(6)
    ]
    wait_until(lambda: all((tmp_path / f"ready{n}").exists() for n in range(6)), message="dispatchers up")
    go.touch()
    answers = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        answers.append(json.loads(out))
    assert all(answer == answers[0] for answer in answers), "every process got the same job per key"
    assert Job.objects.count() == 30
    assert sorted(str(pk) for pk in Job.objects.values_list("pk", flat=True)) == sorted(answers[0].values())
