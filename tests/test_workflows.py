"""Workflows driven by an in-process worker: values passed along, graphs, failures, cancel, retry, errors."""

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.tasks import TaskResultStatus
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_bourbon_jobs import dispatch_async, get_result
from django_bourbon_jobs.exceptions import InvalidPayload, WorkflowDoesNotExist, WorkflowError
from django_bourbon_jobs.models import Job, JobStatus, StepDependency, Workflow, WorkflowStep
from django_bourbon_jobs.operations import cancel_queued, retry_jobs
from django_bourbon_jobs.signals import workflow_finished
from django_bourbon_jobs.store import for_connection
from django_bourbon_jobs.worker import maintenance
from django_bourbon_jobs.workflows import Workflow as WorkflowBuilder
from django_bourbon_jobs.workflows import chain, get_workflow, group
from tests import tasks
from tests import workflow_tasks as wt
from tests.conftest import drain, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def statuses(run):
    run.refresh()
    return {name: result.status for name, result in run.steps.items()}


def job_status(run, name):
    return Job.objects.get(workflow_id=run.id, workflow_step__name=name).status


def test_a_chain_passes_each_return_value_to_the_next_step():
    run = chain((wt.add_one, 1), wt.add_one, wt.double, (wt.add_one, 100)).dispatch()
    assert run.status == "running"
    drain()
    run.refresh()
    assert run.status == "succeeded" and run.is_finished and run.progress == (4, 4)
    assert [run.steps[name].return_value for name in run.steps] == [2, 3, 6, 101]
    assert list(run.steps) == ["1-add_one", "2-add_one", "3-double", "4-add_one"]
    assert run.steps["3-double"].args == [3], "the step's payload is stored as any job's"
    assert run.steps["2-add_one"].status == TaskResultStatus.SUCCESSFUL


def test_a_step_waits_until_its_dependency_succeeded():
    run = chain((wt.add_one, 1), wt.add_one).dispatch()
    first, second = (Job.objects.get(pk=run.steps[name].id) for name in run.steps)
    assert (first.status, second.status) == (JobStatus.QUEUED, JobStatus.WAITING)
    assert run.steps["2-add_one"].status == TaskResultStatus.READY
    assert get_result(second.pk).status == TaskResultStatus.READY
    drain(max_jobs=1)
    second.refresh_from_db()
    assert second.status == JobStatus.QUEUED and second.args == [2]
    first.refresh_from_db()
    assert second.due_at <= timezone.now()


def test_a_diamond_runs_the_join_once_after_both_branches(tmp_path):
    path = str(tmp_path / "log")
    wf = WorkflowBuilder("diamond")
    wf.add("a", wt.note, {"path": path, "mark": "a"})
    wf.add("b", wt.square, {"n": 3}, after=["a"])
    wf.add("c", wt.square, {"n": 4}, after=["a"])
    wf.add("d", wt.total, {"label": "join"}, after=["b", "c"])
    run = wf.dispatch()
    drain(threads=3)
    run.refresh()
    assert run.status == "succeeded"
    assert run.steps["d"].return_value == {
        "sum": 25,
        "failed": [],
        "statuses": {},
        "payload": {"label": "join"},
    }
    d = Job.objects.get(pk=run.steps["d"].id)
    for branch in ("b", "c"):
        assert Job.objects.get(pk=run.steps[branch].id).finished_at <= d.started_at
    assert d.attempts == 1


def test_the_issue_example_graph_runs_in_order():
    wf = WorkflowBuilder("import-feed")
    fetch_step = wf.add("fetch", wt.add_one, 1)
    wf.add("parse", wt.double, after=[fetch_step])
    wf.add("index", wt.add_one, after=["parse"])
    wf.add("notify", wt.total, {"user_id": 7}, after=["parse", "index"])
    run = wf.dispatch()
    drain()
    run.refresh()
    assert run.status == "succeeded"
    assert run.steps["parse"].return_value == 4 and run.steps["index"].return_value == 5
    assert run.steps["notify"].return_value["sum"] == 9
    assert run.steps["notify"].args == [{"user_id": 7}]
    assert get_workflow(run.id).status == "succeeded"


def test_a_group_fans_out_and_its_callback_sees_every_result():
    run = group(*[(wt.square, {"n": n}) for n in range(1, 6)]).then(wt.total, {"user_id": 7}).dispatch()
    assert Job.objects.filter(workflow_id=run.id, status=JobStatus.QUEUED).count() == 5
    drain(threads=2)
    run.refresh()
    assert run.status == "succeeded" and run.progress == (6, 6)
    assert run.steps["then"].return_value["sum"] == 55


def test_a_failing_step_cancels_every_step_after_it_and_the_workflow_fails():
    wf = WorkflowBuilder("breaks")
    wf.add("a", wt.add_one, 1)
    wf.add("bad", wt.breaks, "x", after=["a"])
    wf.add("after-bad", wt.add_one, after=["bad"])
    wf.add("further", wt.add_one, after=["after-bad"])
    wf.add("also-a", wt.add_one, after=["a"])
    finished = []
    workflow_finished.connect(receiver := lambda sender, workflow, **kw: finished.append(workflow.status))
    try:
        run = wf.dispatch()
        drain()
    finally:
        workflow_finished.disconnect(receiver)
    assert statuses(run) == {
        "a": TaskResultStatus.SUCCESSFUL,
        "bad": TaskResultStatus.FAILED,
        "after-bad": TaskResultStatus.FAILED,
        "further": TaskResultStatus.FAILED,
        "also-a": TaskResultStatus.SUCCESSFUL,
    }
    assert job_status(run, "after-bad") == job_status(run, "further") == JobStatus.CANCELLED
    assert Job.objects.get(pk=run.steps["further"].id).attempts == 0, "a cancelled step never ran"
    assert run.status == "failed" and run.progress == (5, 5) and run.finished_at is not None
    assert finished == ["failed"]


def test_on_failure_continue_runs_anyway_and_sees_the_failure():
    wf = WorkflowBuilder("tolerant")
    wf.add("good", wt.add_one, 1)
    wf.add("bad", wt.breaks, "boom")
    wf.add("report", wt.total, None, after=["good", "bad"], on_failure="continue")
    wf.add("strict", wt.add_one, after=["bad"])
    run = wf.dispatch()
    drain()
    run.refresh()
    report = run.steps["report"]
    assert report.status == TaskResultStatus.SUCCESSFUL
    assert report.return_value == {
        "sum": 2,
        "failed": ["bad"],
        "statuses": {"bad": "failed"},
        "payload": None,
    }
    assert job_status(run, "strict") == JobStatus.CANCELLED
    assert run.status == "failed"


def test_a_continue_step_given_no_payload_gets_none_from_a_failed_dependency():
    wf = WorkflowBuilder("tolerant chain")
    wf.add("bad", wt.breaks, "boom")
    wf.add("shows", wt.shows_dependencies, after=["bad"], on_failure="continue")
    run = wf.dispatch()
    drain()
    run.refresh()
    shown = run.steps["shows"]
    assert shown.args == [None]
    assert "StepFailed" in shown.return_value["bad"] and "step broke: boom" in shown.return_value["bad"]


def test_steps_are_retried_like_any_job(tmp_path):
    run = chain((tasks.flaky, {"path": str(tmp_path / "attempts"), "succeed_on": 2}), wt.add_one).dispatch()
    drain()
    run.refresh()
    assert run.status == "succeeded"
    assert Job.objects.get(pk=run.steps["1-flaky"].id).attempts == 2
    assert run.steps["2-add_one"].return_value == 3


def test_step_options_apply_to_its_job():
    wf = WorkflowBuilder("options")
    wf.add("a", wt.add_one, 1, queue_name="fast", priority=7)
    wf.add("b", tasks.send_welcome_email, {"email": "a@example.com"}, after=["a"])
    run = wf.dispatch()
    a = Job.objects.get(pk=run.steps["a"].id)
    b = Job.objects.get(pk=run.steps["b"].id)
    assert (a.queue_name, a.priority) == ("fast", 7)
    assert (b.queue_name, b.priority, b.max_attempts) == ("emails", 10, 5)
    drain(queues=frozenset({"default"}))
    assert Job.objects.get(pk=a.pk).status == JobStatus.QUEUED, "a worker of other queues leaves it"
    drain(queues=frozenset({"fast", "emails"}))
    run.refresh()
    assert run.status == "succeeded"


def test_cancel_before_any_step_ran_cancels_every_step():
    run = chain((wt.add_one, 1), wt.add_one, wt.add_one).dispatch()
    assert run.cancel() is True
    assert run.status == "cancelled" and run.is_finished and run.progress == (3, 3)
    assert set(Job.objects.filter(workflow_id=run.id).values_list("status", flat=True)) == {"cancelled"}
    assert run.cancel() is False
    drain()
    assert not Job.objects.filter(workflow_id=run.id).exclude(status=JobStatus.CANCELLED).exists()


def test_cancel_stops_the_running_step_and_nothing_after_it_runs(tmp_path, settings):
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "TIMEOUT_GRACE": 0.3}
    started = tmp_path / "started"
    wf = WorkflowBuilder("stoppable")
    wf.add("long", wt.waits_to_be_stopped, {"started": str(started)})
    wf.add("next", wt.add_one, 1, after=["long"])
    wf.add("side", wt.add_one, 5, after=["long"], on_failure="continue")
    run = wf.dispatch()
    thread = in_background(drain)
    wait_until(started.exists, message="the long step running")
    assert run.cancel() is True
    assert run.status == "cancelled" and not run.is_finished, "its running step has not stopped yet"
    thread.join(30)
    assert not thread.is_alive()
    run.refresh()
    assert run.status == "cancelled" and run.is_finished
    assert {n: job_status(run, n) for n in ("long", "next", "side")} == dict.fromkeys(
        ("long", "next", "side"), JobStatus.CANCELLED
    )


def test_cancelling_one_pending_step_cancels_those_after_it():
    wf = WorkflowBuilder("partial cancel")
    wf.add("a", wt.add_one, 1)
    wf.add("b", wt.add_one, after=["a"])
    wf.add("c", wt.add_one, after=["b"])
    wf.add("d", wt.add_one, 10, after=["b"], on_failure="continue")
    run = wf.dispatch()
    assert cancel_queued(Job.objects.filter(pk=run.steps["b"].id)) == 1
    assert job_status(run, "c") == JobStatus.CANCELLED
    drain()
    run.refresh()
    assert run.steps["d"].return_value == 11 and run.steps["a"].return_value == 2
    assert run.status == "failed" and run.progress == (4, 4)


def test_retry_runs_a_failed_workflow_again_from_its_failed_steps(tmp_path):
    marker = tmp_path / "ok"
    wf = WorkflowBuilder("retry me")
    wf.add("a", wt.add_one, 1)
    wf.add("flaky", wt.breaks_unless_file, {"path": str(marker)}, after=["a"])
    wf.add("b", wt.add_one, 10, after=["flaky"])
    wf.add("c", wt.add_one, after=["b"])
    run = wf.dispatch()
    drain()
    run.refresh()
    assert run.status == "failed"
    marker.write_text("now")
    assert run.retry() == 3
    assert run.status == "running" and run.progress == (1, 4) and not run.is_finished
    assert [job_status(run, n) for n in ("a", "flaky", "b", "c")] == [
        "succeeded",
        "queued",
        "waiting",
        "waiting",
    ]
    assert WorkflowStep.objects.get(pk=run.steps["c"].id).waiting_for == 1
    drain()
    run.refresh()
    assert run.status == "succeeded" and run.steps["c"].return_value == 12
    assert run.steps["a"].return_value == 2 and Job.objects.get(pk=run.steps["a"].id).attempts == 1


def test_retrying_one_failed_step_retries_its_workflow(tmp_path):
    marker = tmp_path / "ok"
    run = chain((wt.breaks_unless_file, {"path": str(marker)}), wt.noop).dispatch()
    drain()
    marker.write_text("now")
    assert retry_jobs(Job.objects.filter(pk=run.steps["1-breaks_unless_file"].id)) == 1
    drain()
    run.refresh()
    assert run.status == "succeeded" and run.steps["2-noop"].return_value == "file found"


def test_a_step_failed_by_the_rescuer_cancels_those_after_it():
    run = chain((tasks.echo, "x"), wt.add_one).dispatch()
    first = run.steps["1-echo"].id
    expired = timezone.now() - timedelta(seconds=5)
    Job.objects.filter(pk=first).update(
        status=JobStatus.RUNNING,
        attempts=1,
        max_attempts=1,
        attempt_started=True,
        worker_id="gone",
        lease_expires_at=expired,
    )
    assert maintenance.rescue_expired_leases(timezone.now()) == 1
    run.refresh()
    assert job_status(run, "1-echo") == JobStatus.FAILED
    assert job_status(run, "2-add_one") == JobStatus.CANCELLED
    assert run.status == "failed" and run.is_finished


def test_a_rescued_step_with_attempts_left_runs_again_and_the_workflow_goes_on():
    run = chain((tasks.echo, 4), wt.add_one).dispatch()
    expired = timezone.now() - timedelta(seconds=5)
    Job.objects.filter(pk=run.steps["1-echo"].id).update(
        status=JobStatus.RUNNING, attempts=1, attempt_started=True, worker_id="gone", lease_expires_at=expired
    )
    assert maintenance.rescue_expired_leases(timezone.now()) == 1
    assert job_status(run, "2-add_one") == JobStatus.WAITING
    drain()
    run.refresh()
    assert run.status == "succeeded" and run.steps["2-add_one"].return_value == 5


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda wf: wf.add("a", wt.noop, after=["a"]), "waits for itself"),
        (lambda wf: (wf.add("a", wt.noop), wf.add("a", wt.noop)), "already has a step named 'a'"),
    ],
    ids=["self", "repeated-name"],
)
def test_bad_steps_raise_at_add(build, message):
    with pytest.raises(WorkflowError, match=message):
        build(WorkflowBuilder("bad"))


def test_a_cycle_raises_at_dispatch_naming_it_and_writes_nothing():
    wf = WorkflowBuilder("loop")
    wf.add("start", wt.noop, 1)
    wf.add("a", wt.noop, after=["start", "c"])
    wf.add("b", wt.noop, after=["a"])
    wf.add("c", wt.noop, after=["b"])
    with pytest.raises(WorkflowError, match=r"cycle: a -> c -> b -> a"):
        wf.dispatch()
    assert not Job.objects.exists() and not Workflow.objects.exists()


def test_an_unknown_dependency_raises_at_dispatch_and_writes_nothing():
    wf = WorkflowBuilder("typo")
    wf.add("fetch", wt.noop, 1)
    wf.add("parse", wt.noop, after=["fetsh"])
    with pytest.raises(
        WorkflowError, match=r"'parse' of workflow 'typo' waits for 'fetsh', which is not a step"
    ):
        wf.dispatch()
    assert not Job.objects.exists() and not Workflow.objects.exists() and not WorkflowStep.objects.exists()


def test_bad_input_is_refused_before_anything_is_written():
    wf = WorkflowBuilder("inputs")
    with pytest.raises(InvalidPayload):
        wf.add("set", wt.noop, {1, 2})
    with pytest.raises(TypeError, match="needs a task"):
        wf.add("plain", lambda payload: payload)
    with pytest.raises(TypeError, match="takes no idempotency_key"):
        wf.add("keyed", wt.noop, 1, idempotency_key="k")
    with pytest.raises(ValueError, match="on_failure"):
        wf.add("odd", wt.noop, 1, on_failure="ignore")
    with pytest.raises(WorkflowError, match="no steps"):
        wf.dispatch()
    assert not Job.objects.exists() and not Workflow.objects.exists()


def test_steps_can_be_added_only_before_dispatch():
    wf = WorkflowBuilder("closed")
    wf.add("a", wt.noop, 1)
    wf.dispatch()
    with pytest.raises(WorkflowError, match="only before"):
        wf.add("b", wt.noop, 2)
    with pytest.raises(WorkflowError, match="dispatched already"):
        wf.dispatch()
    assert Job.objects.count() == 1


def test_a_workflow_dispatched_in_a_rolled_back_transaction_leaves_nothing():
    wf = WorkflowBuilder("rolled back")
    wf.add("a", wt.noop, 1)
    wf.add("b", wt.noop, after=["a"])

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        run = wf.dispatch()
        assert Job.objects.filter(workflow_id=run.id).count() == 2
        raise Abort
    assert not Workflow.objects.exists() and not Job.objects.exists()
    assert not WorkflowStep.objects.exists() and not StepDependency.objects.exists()
    with pytest.raises(WorkflowDoesNotExist):
        get_workflow(run.id)


def test_get_workflow_of_an_unknown_or_malformed_id():
    for bad in (uuid.uuid4(), "not-a-uuid", ""):
        with pytest.raises(WorkflowDoesNotExist):
            get_workflow(bad)


def test_jobs_outside_workflows_write_their_outcomes_as_before(monkeypatch):
    """A batch without steps runs the one outcome statement: no workflow table is touched."""
    storage = for_connection("default")

    def refuse(*args, **kwargs):
        raise AssertionError("a batch without workflow steps went the workflow way")

    monkeypatch.setattr(type(storage), "record_step_outcomes", refuse)
    for n in range(20):
        dispatch_async(tasks.echo, n)
    with CaptureQueriesContext(connection) as queries:
        drain()
    assert Job.objects.succeeded().count() == 20
    tables = ("bourbon_jobs_workflow", "bourbon_jobs_workflowstep", "bourbon_jobs_stepdependency")
    assert not [q["sql"] for q in queries.captured_queries if any(t in q["sql"] for t in tables)]


def test_deleting_a_workflow_deletes_its_steps():
    run = chain((wt.add_one, 1), wt.add_one).dispatch()
    other = dispatch_async(tasks.echo, "kept")
    Workflow.objects.filter(pk=run.id).delete()
    assert list(Job.objects.values_list("pk", flat=True)) == [uuid.UUID(other.id)]
    assert not WorkflowStep.objects.exists() and not StepDependency.objects.exists()


def in_background(target):
    def run():
        try:
            target()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_workflow_whose_steps_were_all_pruned_is_pruned_too(settings):
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "RETENTION": {"succeeded": 60}}
    done = chain((wt.add_one, 1), wt.add_one).dispatch()
    drain()
    waiting = chain((wt.add_one, 1), wt.add_one).dispatch()
    assert maintenance.prune_finished(timezone.now() + timedelta(seconds=61)) == 2
    assert not Workflow.objects.filter(pk=done.id).exists()
    assert Workflow.objects.filter(pk=waiting.id).exists()
    assert Job.objects.filter(workflow_id=waiting.id).count() == 2


def test_steps_of_a_limited_task_are_held_by_its_limit_and_run():
    """A step's job carries its task's limit, whose row the dispatch writes, as an enqueue would."""
    from django_bourbon_jobs.models import Limit

    run = group(*[(tasks.two_at_a_time, n) for n in range(3)]).then(tasks.two_at_a_time, "done").dispatch()
    assert Limit.objects.get(pk="task:tests.tasks.two_at_a_time").concurrency == 2
    assert set(Job.objects.filter(workflow_id=run.id).values_list("limit_key", flat=True)) == {
        "task:tests.tasks.two_at_a_time"
    }
    drain(threads=2)
    run.refresh()
    assert run.status == "succeeded", statuses(run)
    assert Limit.objects.get(pk="task:tests.tasks.two_at_a_time").running == 0
