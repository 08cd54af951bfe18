"""Concurrency limits (docs/flow-control.md): the store's limited claim, its counters, and a worker.

Runs against the store of each database the suite runs on; the concurrent claims
run on PostgreSQL and SQLite alike (SQLite has one writer at a time).
"""

import re
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.tasks import task
from django.tasks.exceptions import InvalidTask
from django.test import override_settings
from django.utils import timezone

from django_bourbon_jobs import dispatch_many
from django_bourbon_jobs.limits import LimitError, parse_rate
from django_bourbon_jobs.models import Job, JobStatus, Limit
from django_bourbon_jobs.store import for_connection
from django_bourbon_jobs.worker import maintenance
from tests import tasks
from tests.conftest import drain, wait_until
from tests.test_claiming import in_thread

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "task:tests.tasks.two_at_a_time"


def claim(worker_id="w1", limit=10, room=10, queues=(), now=None, lease=60):
    now = now or timezone.now()
    return for_connection("default").claim(
        using="default",
        worker_id=worker_id,
        queues=frozenset(queues),
        limit=limit,
        now=now,
        lease_until=now + timedelta(seconds=lease),
        limited=True,
        limited_room=room,
    )


def finish(jobs, worker_id="w1"):
    """Record the jobs' success as their worker's outcome writer does."""
    now = timezone.now()
    for job in jobs:
        job.mark_succeeded(None, now)
    store = for_connection("default")
    return store.record_limited_outcomes("default", worker_id, jobs, now)[0]


def running_of(key=KEY):
    return Limit.objects.get(pk=key).running


def test_a_limited_task_gets_its_key_and_row_at_enqueue():
    result = tasks.two_at_a_time.enqueue(1)
    assert Job.objects.get(pk=result.id).limit_key == KEY
    row = Limit.objects.get(pk=KEY)
    assert (row.concurrency, row.rate_limit, row.running) == (2, None, 0)
    assert Job.objects.get(pk=tasks.echo.enqueue(1).id).limit_key == ""


def test_the_plain_claim_leaves_limited_jobs_alone():
    tasks.two_at_a_time.enqueue(1)
    plain = tasks.echo.enqueue(2)
    jobs = for_connection("default").claim(
        using="default",
        worker_id="w",
        queues=frozenset(),
        limit=10,
        now=timezone.now(),
        lease_until=timezone.now() + timedelta(seconds=60),
    )
    assert [str(job.pk) for job in jobs] == [plain.id]


def test_no_more_than_the_limit_run_and_the_rest_wait_queued_and_uncharged():
    limited = [tasks.two_at_a_time.enqueue(n).id for n in range(5)]
    plain = [tasks.echo.enqueue(n).id for n in range(3)]
    first = claim()
    assert sorted(str(job.pk) for job in first) == sorted(limited[:2] + plain)
    assert running_of() == 2
    assert claim() == []
    waiting = Job.objects.filter(pk__in=limited[2:])
    assert {(job.status, job.attempts, job.worker_id) for job in waiting} == {(JobStatus.QUEUED, 0, "")}
    assert finish([job for job in first if job.limit_key]) == 2
    assert running_of() == 0
    assert sorted(str(job.pk) for job in claim()) == sorted(limited[2:4])


def test_a_limited_claim_takes_no_more_limited_jobs_than_it_has_room_for():
    for n in range(3):
        tasks.three_at_a_time.enqueue({"path": "unused", "n": n})
    assert len(claim(room=1)) == 1
    assert len(claim(room=0)) == 0
    assert len(claim(room=5)) == 2


def test_other_tasks_are_not_held_up_behind_a_full_limit():
    for n in range(20):
        tasks.two_at_a_time.enqueue(n)
    claim()
    later = [tasks.echo.enqueue(n).id for n in range(3)]
    other_limited = [tasks.three_per_second.enqueue(n).id for n in range(2)]
    assert sorted(str(job.pk) for job in claim()) == sorted(later + other_limited)


def test_a_task_limit_and_its_queue_limit_both_hold():
    with override_settings(BOURBON_JOBS={"QUEUE_LIMITS": {"emails": {"concurrency": 2}}}):
        emails = [tasks.send_welcome_email.enqueue({"email": f"{n}@x"}).id for n in range(3)]
        one = [tasks.one_email_at_a_time.enqueue(n).id for n in range(2)]
        assert Job.objects.get(pk=emails[0]).limit_key == "queue:emails"
        assert Job.objects.get(pk=one[0]).limit_key == "task:tests.tasks.one_email_at_a_time"
        first = claim()
        assert len(first) == 2
        assert sum(1 for job in first if job.limit_key.startswith("task:")) <= 1
        assert running_of("queue:emails") == 2
        assert claim() == []
        finish(first)
        assert running_of("queue:emails") == 0
        second = claim()
        assert len(second) == 2 and sum(1 for job in second if job.limit_key.startswith("task:")) <= 1


def test_the_running_count_follows_every_way_out_of_running():
    ids = [tasks.two_at_a_time.enqueue(n).id for n in range(2)]
    first, second = claim(worker_id="w1", room=2)
    assert running_of() == 2
    assert for_connection("default").release("default", "w1", [first.pk]) == 1
    assert running_of() == 1
    Job.objects.filter(pk=second.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert maintenance.rescue_expired_leases(timezone.now()) == 1
    assert running_of() == 0
    [again, _] = claim(worker_id="w2")
    assert running_of() == 2
    Job.objects.filter(pk=again.pk).delete()
    assert running_of() == 1
    assert Job.objects.filter(pk__in=ids).count() == 1


def test_concurrent_claimers_never_run_more_than_the_limit():
    for n in range(60):
        tasks.three_at_a_time.enqueue({"path": "unused", "n": n})
    key = "task:tests.tasks.three_at_a_time"
    barrier = threading.Barrier(4)
    seen_running: list[int] = []
    done: list[str] = []
    lock = threading.Lock()

    def claimer(i):
        def run():
            barrier.wait()
            idle = 0
            while idle < 50:
                jobs = claim(worker_id=f"w{i}", room=2)
                running = Job.objects.filter(status=JobStatus.RUNNING, limit_key=key).count()
                with lock:
                    seen_running.append(running)
                if not jobs:
                    idle += 1
                    continue
                idle = 0
                finish(jobs, worker_id=f"w{i}")
                with lock:
                    done.extend(str(job.pk) for job in jobs)
            return True

        return run

    threads = [threading.Thread(target=lambda i=i: in_thread(claimer(i))) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(done) == len(set(done)) == 60
    assert max(seen_running) <= 3
    assert Limit.objects.get(pk=key).running == 0


def test_a_worker_drains_limited_jobs_within_the_limit(tmp_path):
    path = tmp_path / "spans"
    for n in range(9):
        tasks.three_at_a_time.enqueue({"path": str(path), "n": n, "seconds": 0.05})
    drain(threads=6)
    spans = [tuple(map(float, line.split())) for line in path.read_text().splitlines()]
    assert len(spans) == 9
    assert max_overlap(spans) <= 3
    assert Job.objects.succeeded().count() == 9


def test_dispatch_many_of_a_limited_task_is_limited_too():
    results = dispatch_many(tasks.two_at_a_time, range(4))
    assert set(Job.objects.filter(pk__in=[r.id for r in results]).values_list("limit_key", flat=True)) == {
        KEY
    }
    assert len(claim()) == 2


def max_overlap(spans):
    """The most spans ``(start, end)`` open at one instant."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be a whole number of at least 1"),
        ({"concurrency": "2"}, "concurrency must be a whole number of at least 1"),
        ({"rate_limit": "10/d"}, "rate_limit must look like '100/m'"),
        ({"rate_limit": "0/s"}, "rate_limit must look like '100/m'"),
        ({"rate_limit": 10}, "rate_limit must look like '100/m'"),
        ({"circuit_breaker": {"threshold": 0, "cooldown": 1}}, "circuit_breaker['threshold']"),
        ({"circuit_breaker": {"threshold": 2, "cooldown": -1}}, "circuit_breaker['cooldown']"),
        ({"circuit_breaker": {"threshold": 2}}, "exactly the keys 'threshold' and 'cooldown'"),
    ],
)
def test_bad_task_options_are_refused_when_the_task_is_declared(options, message):
    with pytest.raises(InvalidTask, match=re.escape(message)):
        task(**options)(tasks.echo.func)


@pytest.mark.parametrize(
    ("text", "count", "window"), [("100/m", 100, 60.0), ("10/s", 10, 1.0), (" 3 / h ", 3, 3600.0)]
)
def test_rates_parse(text, count, window):
    rate = parse_rate(text)
    assert (rate.count, rate.window) == (count, window)


def test_a_rate_without_a_unit_is_refused():
    with pytest.raises(LimitError):
        parse_rate("100")


def test_queue_limits_are_written_when_a_worker_starts_and_cleared_when_removed():
    with override_settings(
        BOURBON_JOBS={"QUEUE_LIMITS": {"emails": {"concurrency": 5, "rate_limit": "10/s"}}}
    ):
        drain()
    row = Limit.objects.get(pk="queue:emails")
    assert (row.concurrency, row.rate_limit, row.rate_window) == (5, 10, 1.0)
    drain()
    row.refresh_from_db()
    assert (row.concurrency, row.rate_limit) == (None, None)


class Statements:
    """Counts the statements a connection runs (``execute_wrapper``)."""

    def __init__(self):
        self.total = 0

    def __call__(self, execute, sql, params, many, context):
        self.total += 1
        return execute(sql, params, many, context)


class CountingClaims:
    """The worker's store, counting its claims."""

    def __init__(self, store):
        self.store = store
        self.claims = 0

    def __getattr__(self, name):
        return getattr(self.store, name)

    def claim(self, **kwargs):
        self.claims += 1
        return self.store.claim(**kwargs)


def run_worker_in_thread(worker, statements):
    from django.db import connections

    def run():
        try:
            with connections["default"].execute_wrapper(statements):
                worker.run()
        finally:
            connections["default"].close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_worker_whose_due_jobs_are_all_over_their_limit_sleeps_and_starts_them_once_a_slot_frees():
    from django_bourbon_jobs.worker.process import WorkerConfig, WorkerProcess

    held = [tasks.two_at_a_time.enqueue(n).id for n in range(2)]
    waiting = [tasks.two_at_a_time.enqueue(n).id for n in range(3)]
    others = claim(worker_id="elsewhere", room=2)
    assert sorted(str(job.pk) for job in others) == sorted(held)
    statements = Statements()
    worker = WorkerProcess(WorkerConfig(poll_interval=2.0, threads=2))
    worker.claimer.store = claims = CountingClaims(worker.claimer.store)
    thread = run_worker_in_thread(worker, statements)
    try:
        worker.stop_requested.wait(1.5)  # measuring the idle worker over a fixed span
        assert claims.claims <= 3, f"{claims.claims} claims in 1.5 s: a busy loop"
        assert statements.total <= 12, f"{statements.total} statements in 1.5 s"
        assert set(Job.objects.filter(pk__in=waiting).values_list("status", "attempts")) == {
            (JobStatus.QUEUED, 0)
        }
        finish(others[:1], worker_id="elsewhere")
        # On PostgreSQL the freed slot wakes the worker (NOTIFY), well before its 2 s poll.
        wait_until(
            lambda: Job.objects.filter(pk__in=waiting).exclude(status=JobStatus.QUEUED).exists(),
            timeout=1.5 if connection.vendor == "postgresql" else 5,
            message="a waiting job to start once a slot is free",
        )
    finally:
        worker.request_stop()
        thread.join(30)


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_a_claim_locks_no_limit_row_while_none_of_its_jobs_is_due():
    from django.db import transaction

    with override_settings(BOURBON_JOBS={"QUEUE_LIMITS": {"emails": {"concurrency": 2}}}):
        tasks.send_welcome_email.enqueue({"email": "a@x"})
        tasks.two_at_a_time.enqueue(1)
        finish(claim())
        plain = tasks.echo.enqueue(2)
        with transaction.atomic():
            # Another transaction holds both rows meanwhile: a claim that locked them would wait.
            list(Limit.objects.select_for_update().filter(pk__in=[KEY, "queue:emails"]))
            jobs = in_thread(claim)
    assert [str(job.pk) for job in jobs] == [plain.id]
