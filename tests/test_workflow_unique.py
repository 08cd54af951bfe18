"""Unique keys on workflow steps: a step holds its key as any job does, and waits its turn for a held one.

A step never merges into another job (its workflow needs its own outcome): when another
job of its task holds its key as it is due, it stays ``waiting`` (``key_held``) and is
queued once the key is free.
"""

import logging

import pytest
from django.utils import timezone

from django_bourbon_jobs import dispatch_async
from django_bourbon_jobs.exceptions import WorkflowError
from django_bourbon_jobs.models import Job, JobStatus, WorkflowStep
from django_bourbon_jobs.operations import cancel, retry_workflow
from django_bourbon_jobs.testing import drain
from django_bourbon_jobs.worker import maintenance
from django_bourbon_jobs.workflows import Workflow, chain, get_workflow, group
from tests import tasks
from tests import workflow_tasks as wt
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def step_job(run, name):
    return Job.objects.select_related("workflow_step").get(workflow_id=run.id, workflow_step__name=name)


def test_a_step_holds_its_unique_key_as_any_job_does():
    wf = Workflow("sync")
    wf.add("sync", tasks.sync_user, {"user": 42})
    run = wf.dispatch()
    job = step_job(run, "sync")
    assert (job.status, job.unique_key, job.unique_while) == (JobStatus.QUEUED, "sync-user-42", "active")
    again = dispatch_async(tasks.sync_user, {"user": 42})
    assert again.id == str(job.pk), "a dispatch while the step is queued gets the step's job"
    drain()
    run.refresh()
    assert run.status == "succeeded" and run.steps["sync"].return_value == 42


def test_a_first_step_whose_key_is_held_waits_for_the_holder_then_runs(caplog):
    holder = dispatch_async(tasks.sync_user, {"user": 7})
    with caplog.at_level(logging.INFO, logger="django_bourbon_jobs"):
        run = chain((tasks.sync_user, {"user": 7}), wt.add_one, name="held").dispatch()
    first = step_job(run, "1-sync_user")
    assert (first.status, first.workflow_step.key_held) == (JobStatus.WAITING, True)
    assert any("event=held" in line and "unique_key=sync-user-7" in line for line in caplog.messages)
    ran = drain()
    assert [result.id for result in ran] == [holder.id, str(first.pk), run.steps["2-add_one"].id]
    run.refresh()
    assert run.status == "succeeded", run.steps.load()
    assert run.steps["2-add_one"].return_value == 8
    first = step_job(run, "1-sync_user")
    assert not first.workflow_step.key_held
    assert first.started_at >= Job.objects.get(pk=holder.id).finished_at


def test_a_released_step_whose_key_is_held_waits_without_harming_the_outcome_batch():
    holder = dispatch_async(tasks.sync_user, {"user": 9}, delay=600)
    wf = Workflow("release held")
    wf.add("a", wt.add_one, 1)
    wf.add("sync", tasks.sync_user, {"user": 9}, after=["a"])
    wf.add("b", wt.add_one, 10)
    run = wf.dispatch()
    drain()
    run.refresh()
    assert (run.steps["a"].return_value, run.steps["b"].return_value) == (2, 11)
    held = step_job(run, "sync")
    assert (held.status, held.workflow_step.key_held, run.status) == (JobStatus.WAITING, True, "running")
    assert maintenance.release_held_steps(timezone.now(), "default") == 0, "the holder still holds it"
    assert cancel(holder.id)
    assert maintenance.HeldSteps("default", every=1.0).run_once(timezone.now()) == 1
    assert step_job(run, "sync").status == JobStatus.QUEUED
    drain()
    run.refresh()
    assert run.status == "succeeded" and run.steps["sync"].return_value == 9


def test_steps_with_one_key_in_one_workflow_run_one_after_another():
    """``unique_while="queued"``: the key is free again once its holder has started."""
    run = group(*[(tasks.rebuild_index, n) for n in range(3)], name="one at a time").dispatch()
    jobs = Job.objects.filter(workflow_id=run.id)
    assert sorted(jobs.values_list("status", flat=True)) == ["queued", "waiting", "waiting"]
    assert WorkflowStep.objects.filter(workflow_id=run.id, key_held=True).count() == 2
    ran = drain()
    assert len(ran) == 3
    run.refresh()
    assert run.status == "succeeded" and run.progress == (3, 3)
    starts = sorted(jobs.values_list("started_at", flat=True))
    assert len(set(starts)) == 3


def test_a_held_step_of_a_cancelled_workflow_is_only_unmarked():
    dispatch_async(tasks.sync_user, {"user": 5}, delay=600)
    wf = Workflow("cancelled while held")
    wf.add("sync", tasks.sync_user, {"user": 5})
    run = wf.dispatch()
    assert run.cancel()
    assert maintenance.release_held_steps(timezone.now(), "default") == 0
    assert step_job(run, "sync").status == JobStatus.CANCELLED
    assert not WorkflowStep.objects.filter(key_held=True).exists()


def test_a_retried_step_whose_key_is_held_waits_for_it():
    wf = Workflow("retried")
    wf.add("sync", tasks.sync_user, {"user": 3})
    run = wf.dispatch()
    assert run.cancel()
    holder = dispatch_async(tasks.sync_user, {"user": 3})
    assert retry_workflow(run.id) == 1
    job = step_job(run, "sync")
    assert (job.status, job.workflow_step.key_held) == (JobStatus.WAITING, True)
    drain()
    run.refresh()
    assert run.status == "succeeded"
    assert step_job(run, "sync").started_at >= Job.objects.get(pk=holder.id).finished_at


def test_a_step_that_takes_a_result_cannot_derive_its_key_from_it_but_can_be_given_one():
    with pytest.raises(WorkflowError, match="unique_key cannot be derived"):
        chain((wt.add_one, 1), tasks.sync_user)
    wf = Workflow("given a key")
    wf.add("a", wt.add_one, 1)
    wf.add("b", wt.add_one, after=["a"], unique_key="add-after-a")
    run = wf.dispatch()
    assert step_job(run, "b").unique_key == "add-after-a"
    drain()
    run = get_workflow(run.id)
    assert run.status == "succeeded" and run.steps["b"].return_value == 3


@pytest.mark.slow
def test_many_workflows_sharing_a_key_all_finish_under_two_processes(runworkers):
    """The supervisor's ``HeldSteps`` queues each held step in turn once the key is free."""
    holder = dispatch_async(tasks.sync_user, {"user": 1}, delay=600)
    runs = [chain((wt.add_one, n), (tasks.sync_user, {"user": 1}), name=f"w{n}").dispatch() for n in range(3)]
    proc = runworkers("--processes", "2", "--threads", "4")
    wait_until(
        lambda: WorkflowStep.objects.filter(key_held=True).count() == 3,
        timeout=60,
        message="every sync step released and found its key held",
    )
    assert cancel(holder.id)
    wait_until(
        lambda: all(get_workflow(run.id).status == "succeeded" for run in runs),
        timeout=90,
        message="every workflow succeeding",
    )
    assert proc.process.poll() is None, proc.output()
    steps = Job.objects.filter(task_path="tests.tasks.sync_user", workflow__isnull=False)
    assert sorted(steps.values_list("status", "attempts")) == [("succeeded", 1)] * 3
    assert not WorkflowStep.objects.filter(key_held=True).exists()
