"""Django's Tasks contract, held against ``DatabaseBackend`` on the suite's database (SQLite or PostgreSQL).

What Django's own ``tests/tasks/`` checks of any backend, and django-tasks-db's tests of a
database one, written for ours: ``enqueue()`` and ``get_result()`` give equal results;
validation refuses what Django refuses, with Django's messages; the signals and the
statuses they carry; the async variants; ``using()``; the ``supports_*`` flags. Jobs run in
this process (``WorkerProcess(WorkerConfig(burst=True)).run()``), one attempt each, as
Django's own backends make.

Where ours differs on purpose the test says so: any queue name is accepted unless
``QUEUES`` lists them, and a job that raises ``KeyboardInterrupt`` fails without taking its
worker down.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, connections, transaction
from django.tasks import (
    DEFAULT_TASK_QUEUE_NAME,
    Task,
    TaskResultStatus,
    default_task_backend,
    task,
    task_backends,
)
from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY
from django.tasks.exceptions import (
    InvalidTask,
    InvalidTaskBackend,
    TaskResultDoesNotExist,
    TaskResultMismatch,
)
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone

from django_bourbon_jobs.backends import DatabaseBackend
from django_bourbon_jobs.models import Job
from django_bourbon_jobs.worker.process import WorkerConfig, WorkerProcess
from tests.contract import tasks

OURS = "django_bourbon_jobs.backends.DatabaseBackend"
CONTRACT_TASKS = {
    "default": {"BACKEND": OURS},
    "other": {"BACKEND": OURS},
    "listed": {"BACKEND": OURS, "QUEUES": [DEFAULT_TASK_QUEUE_NAME, "queue-1"]},
    "missing": {"BACKEND": "does.not.exist"},
}
PRIORITY_RANGE = f"priority must be a whole number between {TASK_MIN_PRIORITY} and {TASK_MAX_PRIORITY}."


@pytest.fixture(autouse=True)
def contract_settings(settings: Any) -> None:
    """Our backend under several aliases; one attempt per job, as Django's backends make."""
    settings.TASKS = CONTRACT_TASKS
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "DEFAULT_MAX_ATTEMPTS": 1}


def run_due(now: datetime | None = None) -> WorkerProcess:
    """Run what is due in this process, then return (the worker's burst mode)."""
    worker = WorkerProcess(WorkerConfig(burst=True), now=(lambda: now) if now else timezone.now)
    worker.run()
    return worker


def run(coroutine_function: Callable[..., Any], *args: Any) -> Any:
    """Await an async call as Django's test runner does: thread-sensitive ORM work stays on this thread."""
    return async_to_sync(coroutine_function)(*args)


def assert_fresh(result: Any, task_: Task, args: list[Any], kwargs: dict[str, Any]) -> None:
    """What a result says right after ``enqueue()``: ready, never attempted, nothing to return yet."""
    assert (result.status, result.is_finished, result.attempts) == (TaskResultStatus.READY, False, 0)
    assert (result.started_at, result.last_attempted_at, result.finished_at) == (None, None, None)
    assert result.enqueued_at is not None and isinstance(result.id, str)
    assert (result.task, result.args, result.kwargs, result.errors) == (task_, args, kwargs, [])
    with pytest.raises(ValueError, match=re.escape("Task has not finished yet")):
        _ = result.return_value


def assert_ran(result: Any, status: TaskResultStatus) -> None:
    """What a result says once its one attempt is over."""
    assert (result.status, result.is_finished, result.attempts) == (status, True, 1)
    assert result.started_at is not None and result.last_attempted_at is not None
    assert result.enqueued_at <= result.started_at <= result.finished_at


class TestTaskDefinition:
    """Declaring tasks and choosing their options: no database involved."""

    def test_the_default_backend_is_ours_with_its_capabilities(self) -> None:
        assert default_task_backend == task_backends["default"]
        assert isinstance(task_backends["default"], DatabaseBackend)
        assert (default_task_backend.alias, default_task_backend.options) == ("default", {})
        backend = task_backends["default"]
        flags = (
            backend.supports_defer,
            backend.supports_async_task,
            backend.supports_get_result,
            backend.supports_priority,
        )
        assert flags == (True, True, True, True)

    def test_the_decorator_makes_tasks_with_or_without_parentheses(self) -> None:
        for declared in (tasks.noop, tasks.noop_async, tasks.noop_bare):
            assert isinstance(declared, Task)
        assert (tasks.noop.name, tasks.noop_async.name) == ("noop", "noop_async")
        assert tasks.noop.module_path == "tests.contract.tasks.noop"
        assert tasks.noop.get_backend() is task_backends["default"]

    def test_using_returns_a_new_task_and_leaves_the_original_alone(self) -> None:
        now = timezone.now()
        assert tasks.noop.using() == tasks.noop and tasks.noop.using() is not tasks.noop
        assert tasks.noop.using(priority=1).priority == 1
        assert tasks.noop.using(queue_name="queue-1").queue_name == "queue-1"
        deferred = tasks.noop.using(run_after=now)
        assert (deferred.run_after, deferred.using(priority=10).run_after) == (now, now)
        assert deferred.using(priority=10).priority == 10 and deferred.priority == 0
        assert (tasks.noop.priority, tasks.noop.queue_name, tasks.noop.run_after) == (
            0,
            DEFAULT_TASK_QUEUE_NAME,
            None,
        )

    def test_using_another_alias_and_unknown_or_missing_backends(self) -> None:
        assert isinstance(tasks.noop.using(backend="other").get_backend(), DatabaseBackend)
        with pytest.raises(InvalidTaskBackend, match=re.escape("The connection 'unknown' doesn't exist.")):
            tasks.noop.using(backend="unknown")
        with pytest.raises(
            InvalidTaskBackend,
            match=re.escape("Could not find backend 'does.not.exist': No module named 'does'"),
        ):
            tasks.noop.using(backend="missing")

    def test_a_naive_run_after_is_refused(self) -> None:
        with pytest.raises(InvalidTask, match=re.escape("run_after must be an aware datetime.")):
            tasks.noop.using(run_after=datetime.now())  # naive on purpose

    @pytest.mark.parametrize("priority", [-101, 101, 3.1])
    def test_a_priority_outside_the_range_is_refused(self, priority: float) -> None:
        with pytest.raises(InvalidTask, match=re.escape(PRIORITY_RANGE)):
            tasks.noop.using(priority=priority)  # type: ignore[arg-type]

    def test_the_bounds_of_the_priority_range_are_accepted(self) -> None:
        for priority in (TASK_MIN_PRIORITY, 0, TASK_MAX_PRIORITY):
            assert tasks.noop.using(priority=priority).priority == priority

    def test_a_queue_not_listed_in_queues_is_refused(self) -> None:
        with pytest.raises(InvalidTask, match=re.escape("Queue 'queue-2' is not valid for backend.")):
            tasks.noop.using(backend="listed", queue_name="queue-2")
        assert tasks.noop.using(backend="listed", queue_name="queue-1").queue_name == "queue-1"

    def test_any_queue_is_accepted_when_queues_is_not_set(self) -> None:
        """Ours differs from Django's default (``["default"]``) on purpose: queues are made by naming them."""
        assert tasks.noop.using(queue_name="queue-2").queue_name == "queue-2"

    def test_only_module_level_functions_become_tasks(self) -> None:
        def nested() -> None:
            return None

        for function in (any, nested):
            with pytest.raises(
                InvalidTask, match=re.escape("Task function must be defined at a module level.")
            ):
                task()(function)

    def test_takes_context_needs_a_context_argument(self) -> None:
        with pytest.raises(
            InvalidTask,
            match=re.escape("Task takes context but does not have a first argument of 'context'."),
        ):
            task(takes_context=True)(tasks.meaning_of_life.func)

    def test_run_after_cannot_be_set_in_the_decorator(self) -> None:
        with pytest.raises(TypeError, match=re.escape("run_after cannot be defined statically")):
            task(run_after=timezone.now())(tasks.meaning_of_life.func)

    def test_a_task_pickles(self) -> None:
        assert pickle.loads(pickle.dumps(tasks.noop)) == tasks.noop

    def test_calling_a_task_runs_it_here(self) -> None:
        assert tasks.meaning_of_life.call() == 42
        assert run(tasks.meaning_of_life.acall) == 42
        assert tasks.noop_async.call() is None
        assert run(tasks.noop_async.acall) is None

    def test_with_no_backends_configured_enqueue_fails(self, settings: Any) -> None:
        settings.TASKS = {}
        with pytest.raises(InvalidTaskBackend):
            tasks.noop.enqueue()


@pytest.mark.django_db
class TestEnqueueAndResults:
    """``enqueue()``, ``get_result()``, ``refresh()`` and their async variants, before any worker runs."""

    @pytest.mark.parametrize("declared", [tasks.noop, tasks.noop_async], ids=["sync", "async"])
    def test_enqueue_returns_a_ready_result_and_sends_task_enqueued(self, declared: Task) -> None:
        with signals_seen() as seen:
            result = declared.enqueue(1, two=3)
        assert_fresh(result, declared, [1], {"two": 3})
        assert seen == [("enqueued", DatabaseBackend, result.id, TaskResultStatus.READY)]

    @pytest.mark.parametrize("declared", [tasks.noop, tasks.noop_async], ids=["sync", "async"])
    def test_aenqueue_does_the_same(self, declared: Task) -> None:
        result = run(declared.aenqueue)
        assert_fresh(result, declared, [], {})
        assert Job.objects.filter(pk=result.id).exists()

    def test_enqueue_is_one_query_and_so_is_get_result(self, django_assert_num_queries: Any) -> None:
        with django_assert_num_queries(1):
            result = default_task_backend.enqueue(tasks.noop, [], {})
        with django_assert_num_queries(1):
            assert default_task_backend.get_result(result.id) == result

    @pytest.mark.parametrize("declared", [tasks.noop, tasks.noop_async], ids=["sync", "async"])
    def test_a_result_read_back_equals_the_one_enqueue_returned(self, declared: Task) -> None:
        result = declared.enqueue(1, two=3)
        assert declared.get_result(result.id) == result
        assert default_task_backend.get_result(result.id) == result
        assert run(declared.aget_result, result.id) == result
        assert run(default_task_backend.aget_result, result.id) == result

    def test_run_after_reads_back_as_given(self) -> None:
        later = timezone.now() + timedelta(hours=1)
        plain, deferred = tasks.noop.enqueue(), tasks.noop.using(run_after=later).enqueue()
        assert tasks.noop.get_result(plain.id).task.run_after is None
        assert tasks.noop.get_result(deferred.id).task.run_after == later
        assert tasks.noop.get_result(deferred.id) == deferred

    def test_refreshing_a_result_nothing_has_touched_changes_nothing(self) -> None:
        result = tasks.noop.enqueue()
        before = dataclasses.asdict(result)
        result.refresh()
        assert dataclasses.asdict(result) == before
        run(result.arefresh)
        assert dataclasses.asdict(result) == before

    def test_a_result_pickles(self) -> None:
        result = tasks.noop.enqueue(1, two=[3])
        assert pickle.loads(pickle.dumps(result)) == result

    @pytest.mark.parametrize("result_id", ["123", str(uuid.uuid4())], ids=["malformed", "unknown"])
    def test_a_missing_result_does_not_exist(self, result_id: str) -> None:
        with pytest.raises(TaskResultDoesNotExist):
            tasks.noop.get_result(result_id)
        with pytest.raises(TaskResultDoesNotExist):
            run(tasks.noop.aget_result, result_id)
        with pytest.raises(TaskResultDoesNotExist):
            run(default_task_backend.aget_result, result_id)

    def test_a_result_of_another_task_is_a_mismatch(self) -> None:
        result = tasks.noop_async.enqueue()
        with pytest.raises(TaskResultMismatch, match=re.escape("Task does not match")):
            tasks.noop.get_result(result.id)
        with pytest.raises(TaskResultMismatch, match=re.escape("Task does not match")):
            run(tasks.noop.aget_result, result.id)

    @pytest.mark.parametrize("call", ["enqueue", "aenqueue"])
    def test_arguments_django_refuses_are_refused_with_its_message(self, call: str) -> None:
        enqueue = getattr(tasks.noop, call)
        with pytest.raises(TypeError, match=re.escape("Unsupported type")):
            run(enqueue, timezone.now()) if call == "aenqueue" else enqueue(timezone.now())
        assert not Job.objects.exists()

    def test_arguments_are_normalised_as_django_normalises_them(self) -> None:
        result = tasks.noop.enqueue(b"bytes", (1, 2), key=("a", b"b"))
        assert (result.args, result.kwargs) == (["bytes", [1, 2]], {"key": ["a", "b"]})
        assert tasks.noop.get_result(result.id) == result

    @pytest.mark.parametrize("call", ["enqueue", "aenqueue"])
    def test_enqueue_validates_against_the_backend_it_reaches(self, call: str, settings: Any) -> None:
        unknown_queue = tasks.noop.using(queue_name="unknown_queue")
        settings.TASKS = {"default": {"BACKEND": OURS, "QUEUES": ["queue-1"]}}
        enqueue = getattr(unknown_queue, call)
        with pytest.raises(InvalidTask, match=re.escape("Queue 'unknown_queue' is not valid for backend")):
            run(enqueue) if call == "aenqueue" else enqueue()

    def test_using_another_alias_reads_back_through_it(self) -> None:
        result = tasks.noop.using(backend="other").enqueue()
        assert (result.backend, result.task.backend) == ("other", "other")
        assert task_backends["other"].get_result(result.id) == result
        result.refresh()
        assert result.backend == "other"


@pytest.mark.django_db(transaction=True)
class TestRunningJobs:
    """Jobs run by a worker in this process: what their results say afterwards."""

    @pytest.mark.parametrize("declared", [tasks.noop, tasks.noop_async], ids=["sync", "async"])
    def test_a_job_succeeds_once_and_its_result_says_so(self, declared: Task) -> None:
        result = declared.enqueue(1, two=3)
        worker = run_due()
        assert result.status == TaskResultStatus.READY  # a snapshot, until refreshed
        result.refresh()
        assert_ran(result, TaskResultStatus.SUCCESSFUL)
        assert result.return_value is None
        assert (result.args, result.kwargs, result.worker_ids) == ([1], {"two": 3}, [worker.worker_id])
        assert result.errors == []

    def test_the_return_value_reads_back_sync_and_async(self) -> None:
        result = default_task_backend.enqueue(tasks.meaning_of_life, [], {})
        other = run(default_task_backend.aenqueue, tasks.meaning_of_life, (), {})
        run_due()
        result.refresh()
        run(other.arefresh)
        assert (result.return_value, other.return_value) == (42, 42)
        assert run(tasks.meaning_of_life.aget_result, result.id).return_value == 42

    @pytest.mark.parametrize(
        "declared, raised, message",
        [
            (tasks.raises_value_error, ValueError, "This task failed due to ValueError"),
            (tasks.raises_system_exit, SystemExit, "This task failed due to SystemExit"),
        ],
        ids=["ValueError", "SystemExit"],
    )
    def test_a_failing_job_records_its_exception(
        self, declared: Task, raised: type[BaseException], message: str
    ) -> None:
        result = declared.enqueue()
        run_due()
        result.refresh()
        assert_ran(result, TaskResultStatus.FAILED)
        with pytest.raises(ValueError, match=re.escape("Task failed")):
            _ = result.return_value
        [error] = result.errors
        assert error.exception_class is raised
        assert error.traceback.endswith(f"{raised.__name__}: {message}\n"), error.traceback
        assert (result.task, result.args, result.kwargs) == (declared, [], {})

    def test_an_exception_holding_an_exception_is_recorded_whole(self) -> None:
        result = tasks.raises_nested_exception.enqueue()
        run_due()
        result.refresh()
        assert_ran(result, TaskResultStatus.FAILED)
        assert result._return_value is None
        assert result.errors[0].exception_class is ValueError
        assert 'ValueError(ValueError("This task failed"))' in result.errors[0].traceback

    def test_a_return_value_django_refuses_fails_the_job_with_its_type_error(self) -> None:
        result = tasks.returns_unsupported_type.enqueue()
        run_due()
        result.refresh()
        assert_ran(result, TaskResultStatus.FAILED)
        assert result._return_value is None
        assert result.errors[0].exception_class is TypeError
        assert "Unsupported type" in result.errors[0].traceback

    def test_an_error_names_its_exception_class_lazily(self) -> None:
        result = tasks.raises_value_error.enqueue()
        run_due()
        result.refresh()
        not_an_exception = dataclasses.replace(result.errors[0], exception_class_path="subprocess.run")
        with pytest.raises(
            ValueError, match=re.escape("'subprocess.run' does not reference a valid exception.")
        ):
            _ = not_an_exception.exception_class
        with pytest.raises(ImportError):
            _ = dataclasses.replace(result.errors[0], exception_class_path="does.not.exist").exception_class

    @pytest.mark.parametrize("declared", [tasks.exits, tasks.raises_keyboard_interrupt], ids=["exit", "^C"])
    def test_a_job_that_exits_or_interrupts_fails_and_the_worker_carries_on(self, declared: Task) -> None:
        """Django's ImmediateBackend re-raises ``KeyboardInterrupt`` in its caller; a worker records it."""
        result, after = declared.enqueue(), tasks.meaning_of_life.enqueue()
        run_due()
        result.refresh()
        after.refresh()
        assert result.status == TaskResultStatus.FAILED
        assert after.return_value == 42

    def test_a_job_taking_context_sees_its_own_result_and_attempt(self) -> None:
        own, attempt = tasks.own_id.enqueue(), tasks.reports_attempt.enqueue(1)
        run_due()
        own.refresh()
        attempt.refresh()
        assert own.return_value == own.id
        assert (attempt.status, attempt.return_value) == (TaskResultStatus.SUCCESSFUL, 1)

    def test_a_deferred_job_waits_for_its_run_after(self) -> None:
        later = timezone.now() + timedelta(hours=1)
        result = tasks.noop.using(run_after=later).enqueue()
        run_due()
        result.refresh()
        assert result.status == TaskResultStatus.READY
        run_due(now=later + timedelta(seconds=1))
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL
        assert result.task.run_after == later

    def test_higher_priority_runs_first_then_the_longest_due(self) -> None:
        earlier = tasks.noop.using(run_after=timezone.now() - timedelta(minutes=5)).enqueue()
        low, high, plain = (tasks.noop.using(priority=p).enqueue() for p in (-5, 5, 0))
        with signals_seen() as seen:
            run_due()  # one thread: jobs start in the order they are claimed
        started = [job for name, _, job, _ in seen if name == "started"]
        assert started == [high.id, earlier.id, plain.id, low.id]

    def test_enqueue_does_not_wait_for_the_transaction_to_commit(self) -> None:
        """The row is written in the caller's transaction: seen there at once, elsewhere on commit."""
        with transaction.atomic():
            result = tasks.noop.enqueue()
            assert result.enqueued_at is not None and Job.objects.filter(pk=result.id).exists()
            if connection.vendor != "sqlite":  # SQLite's writer locks out other connections meanwhile
                assert rows_seen_elsewhere() == 0
        if connection.vendor != "sqlite":
            assert rows_seen_elsewhere() == 1


@pytest.mark.django_db(transaction=True)
class TestSignalsAndLogs:
    """Django's three signals, their senders and statuses, and what Django's own receivers log."""

    def test_each_job_sends_enqueued_started_and_finished_with_its_status(self) -> None:
        with signals_seen() as seen:
            ok, bad = tasks.noop.enqueue(), tasks.raises_value_error.enqueue()
            run_due()
        by_job = {
            job: [(name, sender, status) for name, sender, i, status in seen if i == job]
            for job in (ok.id, bad.id)
        }
        assert by_job[ok.id] == [
            ("enqueued", DatabaseBackend, TaskResultStatus.READY),
            ("started", DatabaseBackend, TaskResultStatus.RUNNING),
            ("finished", DatabaseBackend, TaskResultStatus.SUCCESSFUL),
        ]
        assert by_job[bad.id] == [
            ("enqueued", DatabaseBackend, TaskResultStatus.READY),
            ("started", DatabaseBackend, TaskResultStatus.RUNNING),
            ("finished", DatabaseBackend, TaskResultStatus.FAILED),
        ]

    def test_djangos_log_says_enqueued_running_and_successful(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG, logger="django.tasks")
        result = tasks.noop.enqueue()
        run_due()
        lines = django_task_log(caplog, result.id)
        assert [(level, text.split()[-1]) for level, text in lines] == [
            (logging.DEBUG, "backend=default"),
            (logging.INFO, "state=RUNNING"),
            (logging.INFO, "state=SUCCESSFUL"),
        ]
        assert "enqueued" in lines[0][1]
        assert not any("NoneType" in text for _, text in lines)

    def test_djangos_log_of_a_failed_job_carries_its_traceback(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="django.tasks")
        result = tasks.raises_value_error.enqueue()
        run_due()
        lines = django_task_log(caplog, result.id)
        assert [level for level, _ in lines] == [logging.DEBUG, logging.INFO, logging.ERROR]
        assert "state=FAILED" in lines[2][1]
        assert "ValueError: This task failed due to ValueError" in lines[2][1]  # the traceback


@contextmanager
def signals_seen() -> Iterator[list[tuple[str, type, str, TaskResultStatus]]]:
    """``(signal, sender, result id, status at the time)`` for each of Django's three task signals."""
    seen: list[tuple[str, type, str, TaskResultStatus]] = []
    receivers = {}
    for name, signal in (("enqueued", task_enqueued), ("started", task_started), ("finished", task_finished)):

        def receive(sender: type, task_result: Any, name: str = name, **kwargs: Any) -> None:
            seen.append((name, sender, task_result.id, task_result.status))

        receivers[signal] = receive
        signal.connect(receive, weak=False)
    try:
        yield seen
    finally:
        for signal, receive in receivers.items():
            signal.disconnect(receive)


def django_task_log(caplog: pytest.LogCaptureFixture, result_id: str) -> list[tuple[int, str]]:
    """The ``django.tasks`` records about one result: level and text, tracebacks included."""
    formatter = logging.Formatter("%(message)s")
    return [
        (record.levelno, formatter.format(record))
        for record in caplog.records
        if record.name == "django.tasks" and result_id in record.getMessage()
    ]


def rows_seen_elsewhere() -> int:
    """How many job rows a connection of its own sees (django-tasks-db's check of the same)."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {Job._meta.db_table}")
            return int(cursor.fetchone()[0])
    finally:
        other.close()
