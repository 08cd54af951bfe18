"""Workflows under real ``runworkers`` processes: a fan-in over two processes, a worker SIGKILLed mid-way."""

import json
import os
import signal

import pytest

from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.workflows import Workflow, get_workflow, group
from tests import tasks
from tests import workflow_tasks as wt
from tests.conftest import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAST = json.dumps(
    {"LEASE_SECONDS": 2, "HEARTBEAT_SECONDS": 0.2, "RESCUE_INTERVAL": 0.2, "POLL_INTERVAL": 0.05}
)


def test_a_group_of_1000_runs_its_callback_exactly_once_with_two_processes(runworkers, tmp_path):
    log = tmp_path / "callback"
    members = [(wt.square, {"n": n}) for n in range(1000)]
    run = group(*members, name="fan-in").then(wt.note, {"path": str(log), "mark": "callback"}).dispatch()
    proc = runworkers("--processes", "2", "--threads", "4", "--burst")
    assert proc.wait(180) == 0, proc.output()
    run.refresh()
    assert run.status == "succeeded" and run.progress == (1001, 1001)
    [(mark, ran_at)] = [line.split() for line in log.read_text().splitlines()]
    assert mark == "callback"
    steps = Job.objects.filter(workflow_id=run.id)
    assert steps.filter(status=JobStatus.SUCCEEDED).count() == 1001
    assert not steps.exclude(attempts=1).exists(), "every step ran exactly once"
    callback = steps.get(pk=run.steps["then"].id)
    last_member = steps.exclude(pk=callback.pk).order_by("-finished_at").first()
    # The callback's own clock: its claim's timestamp is read before SQLite's write lock is taken.
    assert float(ran_at) >= last_member.finished_at.timestamp(), "the callback ran after every member"
    assert len(set(steps.values_list("worker_id", flat=True))) == 2, "both processes should work"


def test_a_workflow_whose_worker_is_sigkilled_mid_way_completes(runworkers, tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    wf = Workflow("killed mid-way")
    wf.add("first", wt.add_one, 1)
    wf.add("long", tasks.wait_for_file, {"started": str(started), "release": str(release)}, after=["first"])
    wf.add("last", wt.noop, after=["long"])
    wf.add("side", wt.add_one, after=["first"])
    run = wf.dispatch()
    proc = runworkers("--processes", "1", BOURBON_TEST_SETTINGS=FAST)
    child = int(wait_until(lambda: started.exists() and started.read_text(), message="the long step"))
    started.unlink()
    os.kill(child, signal.SIGKILL)
    new_child = int(
        wait_until(lambda: started.exists() and started.read_text(), message="its second attempt")
    )
    assert new_child != child
    release.touch()
    wait_until(
        lambda: get_workflow(run.id).status == "succeeded", timeout=60, message="the workflow succeeding"
    )
    run.refresh()
    assert run.steps["last"].return_value == "released"
    assert run.steps["side"].return_value == 3
    long = Job.objects.get(pk=run.steps["long"].id)
    assert long.attempts == 2
    assert [e["exception_class_path"] for e in long.errors] == ["django_bourbon_jobs.exceptions.WorkerLost"]
    assert Job.objects.get(pk=run.steps["last"].id).attempts == 1
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.output()


def test_a_fan_in_survives_a_worker_sigkilled_while_it_writes_outcomes(runworkers, tmp_path):
    """Kill one of two processes while a group's members finish: the callback still runs exactly once."""
    log, runs = tmp_path / "callback", tmp_path / "runs"
    members = [(tasks.naps_twice, {"path": str(runs), "n": n, "seconds": 0.01}) for n in range(300)]
    run = group(*members).then(wt.note, {"path": str(log), "mark": "callback"}).dispatch()
    proc = runworkers("--processes", "2", "--threads", "2", BOURBON_TEST_SETTINGS=FAST)
    wait_until(lambda: runs.exists() and len(runs.read_text().split()) >= 60, message="members running")
    victims = [int(pid) for pid in os.popen(f"pgrep -P {proc.process.pid}").read().split()]
    os.kill(victims[0], signal.SIGKILL)
    wait_until(lambda: get_workflow(run.id).is_finished, timeout=90, message="the workflow finishing")
    run.refresh()
    assert run.status == "succeeded", Job.objects.filter(workflow_id=run.id).exclude(status="succeeded")
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["callback"]
    assert set(int(n) for n in runs.read_text().split()) == set(range(300))
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.output()
