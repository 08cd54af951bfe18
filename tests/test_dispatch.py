"""dispatch_async / get_result / Task.enqueue: the public contract and its bad inputs."""

import re
from datetime import timedelta

import pytest
from django.db import transaction
from django.tasks import TaskResultStatus, task
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone

from django_bourbon_jobs import dispatch_async, dispatch_many, get_result
from django_bourbon_jobs.exceptions import InvalidPayload
from django_bourbon_jobs.models import Job, JobStatus
from tests import tasks

pytestmark = pytest.mark.django_db


def test_dispatch_returns_a_queued_result_with_a_string_id():
    result = dispatch_async(tasks.echo, {"n": 1})
    assert isinstance(result.id, str)
    assert result.status == TaskResultStatus.READY
    job = Job.objects.get(pk=result.id)
    assert (job.status, job.args, job.kwargs) == (JobStatus.QUEUED, [{"n": 1}], {})
    assert job.task_path == "tests.tasks.echo"


def test_enqueue_and_dispatch_share_one_store():
    first = tasks.echo.enqueue({"via": "django"})
    second = dispatch_async(tasks.echo, {"via": "bourbon"})
    assert {get_result(first.id).args[0]["via"], get_result(second.id).args[0]["via"]} == {
        "django",
        "bourbon",
    }


def test_task_options_are_stored_on_the_job():
    result = tasks.send_welcome_email.enqueue({"email": "a@example.com"})
    job = Job.objects.get(pk=result.id)
    assert (job.queue_name, job.priority, job.max_attempts) == ("emails", 10, 5)
    assert tasks.send_welcome_email.timeout == 30


def test_dispatch_options_override_the_task_defaults():
    run_after = timezone.now() + timedelta(hours=1)
    result = dispatch_async(tasks.echo, None, queue_name="bulk", priority=-5, run_after=run_after)
    job = Job.objects.get(pk=result.id)
    assert (job.queue_name, job.priority, job.run_after) == ("bulk", -5, run_after)


def test_run_after_reads_back_as_dispatched_and_the_results_are_equal():
    later = timezone.now() + timedelta(hours=1)
    plain, scheduled = tasks.echo.enqueue(1), tasks.echo.using(run_after=later).enqueue(2)
    assert get_result(plain.id) == plain and get_result(plain.id).task.run_after is None
    assert get_result(scheduled.id) == scheduled and get_result(scheduled.id).task.run_after == later
    assert Job.objects.get(pk=plain.id).due_at == Job.objects.get(pk=plain.id).enqueued_at
    assert Job.objects.get(pk=scheduled.id).due_at == later


def test_a_result_fetched_back_carries_what_the_dispatch_recorded():
    result = dispatch_async(tasks.echo, 1, idempotency_key="k-1", callback_url="https://hooks.example.com/x")
    fresh = get_result(result.id)
    assert fresh == result
    assert (fresh.task.idempotency_key, fresh.task.callback_url) == ("k-1", "https://hooks.example.com/x")


def test_delay_sets_run_after_from_now():
    before = timezone.now()
    job = Job.objects.get(pk=dispatch_async(tasks.echo, 1, delay=timedelta(minutes=5)).id)
    assert before + timedelta(minutes=5) <= job.run_after <= timezone.now() + timedelta(minutes=5)
    job = Job.objects.get(pk=dispatch_async(tasks.echo, 1, delay=30).id)
    assert job.run_after >= before + timedelta(seconds=30)


def test_run_after_and_delay_together_are_refused():
    with pytest.raises(TypeError, match="run_after or delay"):
        dispatch_async(tasks.echo, 1, run_after=timezone.now(), delay=5)
    assert not Job.objects.exists()


def test_negative_delay_is_refused():
    with pytest.raises(ValueError, match="negative"):
        dispatch_async(tasks.echo, 1, delay=-1)


def test_unknown_option_is_refused():
    with pytest.raises(TypeError, match="unknown options: retries"):
        dispatch_async(tasks.echo, 1, retries=3)
    assert not Job.objects.exists()


def test_undecorated_function_is_refused_with_a_hint():
    with pytest.raises(TypeError, match="decorate it with @task"):
        dispatch_async(tasks.not_a_task, 1)
    assert not Job.objects.exists()


@pytest.mark.parametrize("payload", [{"when": timezone.now()}, {1, 2}, object(), float("nan")])
def test_non_json_payload_raises_and_writes_nothing(payload):
    with pytest.raises(InvalidPayload, match="must be JSON-serialisable"):
        dispatch_async(tasks.echo, payload)
    with pytest.raises(InvalidPayload):
        tasks.echo.enqueue(payload)
    assert not Job.objects.exists()


def test_arguments_are_normalised_as_django_normalises_them():
    result = tasks.echo.enqueue(b"caf\xc3\xa9", ("a", (1, 2)), key=(b"x",))
    assert (result.args, result.kwargs) == (["café", ["a", [1, 2]]], {"key": ["x"]})
    assert get_result(result.id) == result


@pytest.mark.parametrize(
    "payload, refused, message",
    [
        (timezone.now(), TypeError, "Unsupported type: <class 'datetime.datetime'>"),
        ({1, 2}, TypeError, "Unsupported type: <class 'set'>"),
        (b"\xff", ValueError, "Unsupported value: <class 'bytes'>"),
    ],
)
def test_arguments_django_refuses_raise_what_django_raises(payload, refused, message):
    with pytest.raises(refused, match=re.escape(message)):
        tasks.echo.enqueue(payload)
    with pytest.raises(InvalidPayload, match=re.escape(message)):
        dispatch_async(tasks.echo, payload)
    assert not Job.objects.exists()


def test_naive_run_after_is_refused():
    with pytest.raises(InvalidTask, match="aware"):
        dispatch_async(tasks.echo, 1, run_after=timezone.now().replace(tzinfo=None))


def test_get_result_of_unknown_or_malformed_id_raises():
    with pytest.raises(TaskResultDoesNotExist):
        get_result("01a20856-1b7d-79ea-ab93-c261e11612f5")
    with pytest.raises(TaskResultDoesNotExist):
        get_result("not-a-uuid")


def test_get_result_reads_the_stored_state():
    result = dispatch_async(tasks.echo, {"x": 1})
    Job.objects.filter(pk=result.id).update(status=JobStatus.SUCCEEDED, return_value={"x": 1}, attempts=1)
    fresh = get_result(result.id)
    assert fresh.status == TaskResultStatus.SUCCESSFUL
    assert fresh.return_value == {"x": 1}
    assert fresh.attempts == 1
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL


def test_task_enqueued_signal_fires():
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append(task_result.id)

    task_enqueued.connect(receiver)
    try:
        result = dispatch_async(tasks.echo, 1)
    finally:
        task_enqueued.disconnect(receiver)
    assert seen == [result.id]


def test_enqueue_rolled_back_with_its_transaction():
    with pytest.raises(RuntimeError), transaction.atomic():
        dispatch_async(tasks.echo, 1)
        raise RuntimeError("the view failed")
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout": -1}, "timeout"),
        ({"backoff": "soon"}, "backoff"),
    ],
)
def test_bad_task_options_are_refused_at_definition(options, message):
    def job(payload):
        return payload

    job.__qualname__ = job.__name__  # a module-level function, as Django requires
    with pytest.raises(InvalidTask, match=message):
        task(**options)(job)


def test_dispatched_by_is_recorded_and_not_leaked_to_later_dispatches(django_user_model):
    user = django_user_model.objects.create_user("grace")
    mine = dispatch_async(tasks.echo, 1, dispatched_by=user)
    later = tasks.echo.enqueue(2)
    assert Job.objects.get(pk=mine.id).dispatched_by == user
    assert Job.objects.get(pk=later.id).dispatched_by is None


def test_retry_requeues_failed_and_cancelled_jobs_keeping_their_errors():
    failed = tasks.echo.enqueue(1)
    cancelled = tasks.echo.enqueue(2)
    queued = tasks.echo.enqueue(3)
    error = {"exception_class_path": "builtins.ValueError", "traceback": "tb", "message": "boom"}
    Job.objects.filter(pk=failed.id).update(status=JobStatus.FAILED, attempts=3, errors=[error])
    Job.objects.filter(pk=cancelled.id).update(status=JobStatus.CANCELLED)
    assert Job.objects.all().retry(timezone.now()) == 2
    job = Job.objects.get(pk=failed.id)
    assert (job.status, job.attempts, job.errors, job.finished_at) == (JobStatus.QUEUED, 0, [error], None)
    assert Job.objects.get(pk=cancelled.id).status == JobStatus.QUEUED
    assert Job.objects.get(pk=queued.id).attempts == 0


def test_dispatch_many_writes_every_job_with_the_options():
    results = dispatch_many(tasks.echo, [{"n": n} for n in range(2500)], queue_name="fanout", priority=3)
    assert len(results) == 2500 and len({r.id for r in results}) == 2500
    assert Job.objects.filter(queue_name="fanout", priority=3, status=JobStatus.QUEUED).count() == 2500
    assert Job.objects.get(pk=results[1234].id).args == [{"n": 1234}]


def test_dispatch_many_is_all_or_nothing():
    with pytest.raises(InvalidPayload):
        dispatch_many(tasks.echo, [1, 2, {3}, 4])
    assert not Job.objects.exists()
    with pytest.raises(TypeError, match="decorate it"):
        dispatch_many(tasks.not_a_task, [1])


def test_dispatch_many_records_the_dispatcher_on_every_row(django_user_model):
    user = django_user_model.objects.create_user("lin")
    results = dispatch_many(tasks.echo, [{"n": n} for n in range(50)], dispatched_by=user, delay=60)
    jobs = Job.objects.filter(pk__in=[r.id for r in results])
    assert jobs.filter(dispatched_by=user).count() == 50
    assert sorted(job.args[0]["n"] for job in jobs) == list(range(50))
    assert jobs.values("run_after").distinct().count() == 1


def test_retry_clears_progress_and_a_stale_cancel_request():
    job_id = tasks.echo.enqueue(1).id
    Job.objects.filter(pk=job_id).update(
        status=JobStatus.CANCELLED, progress={"current": 5}, cancel_requested_at=timezone.now()
    )
    Job.objects.filter(pk=job_id).retry(timezone.now())
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.progress, job.cancel_requested_at) == (JobStatus.QUEUED, None, None)


def test_dispatch_many_ids_follow_the_payload_order_so_workers_take_them_in_that_order():
    import uuid

    results = dispatch_many(tasks.echo, list(range(300)))
    ids = [uuid.UUID(result.id) for result in results]
    assert ids == sorted(ids) and len(set(ids)) == 300
    assert all(job_id.version == 7 and job_id.variant == uuid.RFC_4122 for job_id in ids)
    assert [job.args[0] for job in Job.objects.order_by("id")] == list(range(300))


def test_dispatch_many_keeps_flat_and_nested_payloads_as_they_read_back():
    payloads = [None, [1, "a", True], {"k": None}, {"nested": {"x": (1, 2)}}, {1: "int key"}]
    results = dispatch_many(tasks.echo, payloads)
    stored = {str(job.id): job.args[0] for job in Job.objects.all()}
    assert [stored[result.id] for result in results] == [
        None,
        [1, "a", True],
        {"k": None},
        {"nested": {"x": [1, 2]}},
        {"1": "int key"},
    ]
    assert [result.args[0] for result in results] == [stored[result.id] for result in results]


def test_dispatch_many_returns_the_results_get_result_reads_back():
    results = dispatch_many(tasks.echo, [{"n": n} for n in range(5)], queue_name="fanout", priority=2)
    for result in results:
        fresh = get_result(result.id)
        assert (result.id, result.status, result.args, result.kwargs) == (
            fresh.id,
            fresh.status,
            fresh.args,
            fresh.kwargs,
        )
        assert (result.task.queue_name, result.task.priority, result.backend) == (
            fresh.task.queue_name,
            fresh.task.priority,
            fresh.backend,
        )
        assert (result.enqueued_at, result.started_at, result.finished_at) == (
            fresh.enqueued_at,
            fresh.started_at,
            fresh.finished_at,
        )
    results[0].errors.append("mine")
    results[0].worker_ids.append("mine")
    assert results[1].errors == [] and results[1].worker_ids == []


def test_dispatch_many_pauses_the_garbage_collector_only_for_the_call():
    import gc

    seen = []
    task_enqueued.connect(lambda **kwargs: seen.append(gc.isenabled()), weak=False, dispatch_uid="gc-probe")
    try:
        assert gc.isenabled()
        with pytest.raises(InvalidPayload):
            dispatch_many(tasks.echo, [1, {2}])
        assert gc.isenabled()
        dispatch_many(tasks.echo, [1, 2])
        assert gc.isenabled() and seen == [True, True]
        gc.disable()
        dispatch_many(tasks.echo, [3])
        assert not gc.isenabled()
    finally:
        gc.enable()
        task_enqueued.disconnect(dispatch_uid="gc-probe")


def test_cancel_queued_cancels_the_queued_ones_of_a_queryset_and_announces_each(django_user_model):
    from django_bourbon_jobs import cancel_queued
    from django_bourbon_jobs.signals import job_finished

    user = django_user_model.objects.create(username="reporter")
    mine = [dispatch_async(tasks.echo, n, queue_name="reports", dispatched_by=user).id for n in range(3)]
    started = mine.pop()
    Job.objects.filter(pk=started).update(status=JobStatus.RUNNING)
    others = dispatch_async(tasks.echo, "not mine", queue_name="reports").id
    heard: list[tuple[str, str]] = []

    def receiver(sender, job, **kwargs):
        heard.append((str(job.pk), job.status))

    job_finished.connect(receiver)
    try:
        cancelled = cancel_queued(Job.objects.filter(queue_name="reports", dispatched_by=user))
    finally:
        job_finished.disconnect(receiver)
    assert cancelled == 2
    assert sorted(heard) == sorted((pk, JobStatus.CANCELLED) for pk in mine)
    assert Job.objects.get(pk=started).status == JobStatus.RUNNING
    assert Job.objects.get(pk=others).status == JobStatus.QUEUED
    assert cancel_queued(Job.objects.filter(pk__in=mine)) == 0, "already cancelled: nothing to do"


def test_retry_queues_failed_and_cancelled_jobs_again_and_announces_each(monkeypatch, caplog):
    from django_bourbon_jobs import operations, retry_jobs
    from django_bourbon_jobs.signals import job_retried

    monkeypatch.setattr(operations, "CHUNK", 2)
    ids = [dispatch_async(tasks.echo, n).id for n in range(5)]
    Job.objects.filter(pk__in=ids[:2]).update(status=JobStatus.FAILED, attempts=3, errors=[{"message": "x"}])
    Job.objects.filter(pk__in=ids[2:4]).update(status=JobStatus.CANCELLED)
    heard: list[tuple[str, str, int]] = []

    def receiver(sender, job, **kwargs):
        heard.append((str(job.pk), job.status, job.attempts))

    job_retried.connect(receiver)
    caplog.set_level("INFO", logger="django_bourbon_jobs")
    try:
        assert retry_jobs(Job.objects.all()) == 4
    finally:
        job_retried.disconnect(receiver)
    assert sorted(heard) == sorted((pk, JobStatus.QUEUED, 0) for pk in ids[:4])
    assert Job.objects.get(pk=ids[0]).errors == [{"message": "x"}], "the error history stays"
    assert sum("event=retried" in record.getMessage() for record in caplog.records) == 4
    assert retry_jobs(Job.objects.filter(pk=ids[4])) == 0, "a queued job is not retried"


def test_dispatch_extras_travel_on_a_copy_of_the_task(django_user_model):
    """No ContextVar: what one dispatch records is on the task it enqueues, not on the declared task."""
    user = django_user_model.objects.create(username="ada")
    first = dispatch_async(tasks.echo, 1, dispatched_by=user, idempotency_key="k1")
    plain = tasks.echo.enqueue(2)
    assert (tasks.echo.dispatched_by, tasks.echo.idempotency_key) == (None, "")
    assert Job.objects.get(pk=first.id).dispatched_by == user
    assert Job.objects.get(pk=first.id).idempotency_key == "k1"
    assert Job.objects.get(pk=plain.id).dispatched_by is None
    assert Job.objects.get(pk=plain.id).idempotency_key == ""


def test_extras_for_a_task_of_another_backend_are_refused():
    from django.tasks import Task

    foreign = Task(priority=0, func=tasks.echo.func, backend="default", queue_name="default", run_after=None)
    with pytest.raises(TypeError, match="cannot record dispatched_by"):
        dispatch_async(foreign, 1, idempotency_key="k")
