"""django_bourbon_jobs.testing: the helpers users' tests call, checked the way users would call them."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.tasks import TaskResultStatus
from django.test import TestCase
from django.utils import timezone

from django_bourbon_jobs import dispatch_async
from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.testing import (
    DrainInTransaction,
    assert_dispatched,
    dispatched,
    drain,
    run_immediately,
)
from tests import tasks


@pytest.mark.django_db(transaction=True)
class TestDrain:
    def test_runs_what_is_due_and_returns_it(self):
        first = dispatch_async(tasks.echo, {"n": 1})
        second = tasks.send_welcome_email.enqueue({"email": "ada@example.com"})
        later = tasks.echo.using(run_after=timezone.now() + timedelta(hours=1)).enqueue({"n": 3})
        ran = drain()
        assert [result.id for result in ran] == [second.id, first.id], (
            "in the order they started: priority 10 first"
        )
        assert [result.status for result in ran] == [TaskResultStatus.SUCCESSFUL] * 2
        assert ran[0].return_value == {"sent_to": "ada@example.com"}
        assert Job.objects.get(pk=later.id).status == JobStatus.QUEUED
        assert drain() == [], "nothing due is left"

    def test_runs_retries_that_are_due_and_lists_the_job_once(self):
        result = tasks.always_fails.enqueue(None)
        [ran] = drain()
        assert ran.id == result.id and ran.status == TaskResultStatus.FAILED and ran.attempts == 2
        assert [error.exception_class_path for error in ran.errors] == ["builtins.ValueError"] * 2

    def test_serves_only_the_queues_asked_for(self):
        email = tasks.send_welcome_email.enqueue({"email": "a@example.com"})  # queue "emails"
        other = tasks.echo.enqueue(1)
        assert [result.id for result in drain(queues=["emails"])] == [email.id]
        assert Job.objects.get(pk=other.id).status == JobStatus.QUEUED

    def test_stops_after_max_jobs(self):
        for n in range(3):
            tasks.echo.enqueue(n)
        assert len(drain(max_jobs=2)) == 2
        assert Job.objects.queued().count() == 1

    def test_refuses_to_run_inside_a_transaction(self):
        with transaction.atomic():
            tasks.echo.enqueue(1)
            with pytest.raises(DrainInTransaction, match="TransactionTestCase"):
                drain()


@pytest.mark.django_db
class TestAssertDispatched:
    def test_finds_the_latest_matching_dispatch(self):
        dispatch_async(tasks.echo, {"n": 1})
        latest = tasks.echo.using(priority=5).enqueue({"n": 1})
        tasks.echo.enqueue({"n": 2})
        found = assert_dispatched(tasks.echo, {"n": 1})
        assert found.id == latest.id and found.task.priority == 5

    def test_compares_arguments_as_stored(self):
        tasks.echo.enqueue((1, 2), flag=True)
        assert assert_dispatched(tasks.echo, [1, 2], flag=True).kwargs == {"flag": True}
        assert assert_dispatched(tasks.echo, (1, 2), flag=True)

    def test_says_what_was_dispatched_instead(self):
        tasks.echo.enqueue({"n": 2})
        with pytest.raises(AssertionError, match=r"tests\.tasks\.echo was not dispatched with.*\n.*'n': 2"):
            assert_dispatched(tasks.echo, {"n": 1})
        with pytest.raises(AssertionError, match="it was never dispatched"):
            assert_dispatched(tasks.record, {"n": 2})

    def test_other_tasks_do_not_match(self):
        tasks.record.enqueue({"n": 1})
        with pytest.raises(AssertionError):
            assert_dispatched(tasks.echo, {"n": 1})

    def test_dispatched_lists_each_tasks_jobs_oldest_first(self):
        a = tasks.echo.enqueue(1)
        b = tasks.record.enqueue({"n": 1})
        c = tasks.echo.enqueue(2)
        assert [result.id for result in dispatched(tasks.echo)] == [a.id, c.id]
        assert [result.id for result in dispatched()] == [a.id, b.id, c.id]
        assert dispatched(tasks.echo)[0].args == [1]


@pytest.mark.django_db(transaction=True)
class TestRunImmediately:
    def test_a_dispatch_returns_its_finished_result(self):
        with run_immediately():
            result = dispatch_async(tasks.send_welcome_email, {"email": "ada@example.com"})
        assert result.status == TaskResultStatus.SUCCESSFUL
        assert result.return_value == {"sent_to": "ada@example.com"}
        assert Job.objects.get(pk=result.id).status == JobStatus.SUCCEEDED

    def test_the_result_makes_the_json_round_trip(self):
        with run_immediately():
            result = tasks.returns_tuple.enqueue((1, 2))
        assert result.return_value == [[1, 2], [1, 2]]

    def test_a_failing_job_fails_as_in_production(self):
        with run_immediately():
            result = tasks.always_fails.enqueue(None)
        assert result.status == TaskResultStatus.FAILED and result.attempts == 2

    def test_a_job_queued_by_a_job_runs_too(self):
        with run_immediately():
            parent = tasks.echo_later.enqueue({"n": 7})
        child = Job.objects.get(pk=parent.return_value)
        assert (child.status, child.return_value) == (JobStatus.SUCCEEDED, {"n": 7})

    def test_jobs_run_when_their_transaction_commits(self):
        with run_immediately():
            with transaction.atomic():
                result = tasks.echo.enqueue(1)
                assert Job.objects.get(pk=result.id).status == JobStatus.QUEUED
            assert result.status == TaskResultStatus.SUCCESSFUL

    def test_outside_the_block_jobs_wait(self):
        with run_immediately():
            pass
        result = tasks.echo.enqueue(1)
        assert Job.objects.get(pk=result.id).status == JobStatus.QUEUED


class TestInATestCase(TestCase):
    """A TestCase's transaction never commits: the helpers that run jobs say so instead of doing nothing."""

    def test_run_immediately_refuses(self):
        with run_immediately(), self.assertRaisesMessage(DrainInTransaction, "TransactionTestCase"):
            tasks.echo.enqueue(1)

    def test_drain_refuses(self):
        with self.assertRaisesMessage(DrainInTransaction, "TransactionTestCase"):
            drain()

    def test_assert_dispatched_works(self):
        dispatch_async(tasks.echo, {"n": 1})
        assert_dispatched(tasks.echo, {"n": 1})
