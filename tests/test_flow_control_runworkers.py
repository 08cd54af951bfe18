"""Limits hold across hosts: two ``runworkers`` supervisors, 2 processes x 4 threads each.

Each job appends its own start and end time (epoch seconds) to a file; the test
reads them back and checks the limit on what really ran.
"""

import json
import signal

import pytest
from django.test import override_settings

from django_bourbon_jobs.models import Job, JobStatus, Limit
from tests import tasks
from tests.conftest import wait_until
from tests.test_limits import max_overlap
from tests.test_rate_limits import most_in_window

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

POOL = ("--processes", "2", "--threads", "4")


def spans_in(path):
    return [tuple(map(float, line.split())) for line in path.read_text().splitlines()]


def two_hosts(runworkers, **env):
    return [runworkers(*POOL, **env) for _ in range(2)]


def stop(supervisors):
    for proc in supervisors:
        proc.signal(signal.SIGTERM)
    for proc in supervisors:
        assert proc.wait(60) == 0, proc.output()


def test_a_concurrency_limit_holds_across_two_supervisors(runworkers, tmp_path):
    path = tmp_path / "spans"
    limited = [tasks.three_at_a_time.enqueue({"path": str(path), "seconds": 0.04}).id for _ in range(90)]
    plain = [tasks.echo.enqueue(n).id for n in range(200)]
    supervisors = two_hosts(runworkers)
    wait_until(
        lambda: Job.objects.filter(pk__in=plain, status=JobStatus.SUCCEEDED).count() == 200,
        timeout=60,
        message="the unlimited jobs, not held up behind the limited ones",
    )
    wait_until(
        lambda: Job.objects.filter(pk__in=limited, status=JobStatus.SUCCEEDED).count() == 90,
        timeout=120,
        message="every limited job",
    )
    stop(supervisors)
    spans = spans_in(path)
    assert len(spans) == 90
    assert max_overlap(spans) <= 3
    assert max_overlap(spans) == 3, "16 threads had work for 3 at a time"
    assert set(Job.objects.filter(pk__in=limited).values_list("attempts", flat=True)) == {1}
    assert Limit.objects.get(pk="task:tests.tasks.three_at_a_time").running == 0


def test_a_rate_limit_holds_across_two_supervisors(runworkers, tmp_path):
    path = tmp_path / "starts"
    ids = [tasks.five_per_second.enqueue({"path": str(path)}).id for _ in range(25)]
    supervisors = two_hosts(runworkers)
    wait_until(
        lambda: Job.objects.filter(pk__in=ids, status=JobStatus.SUCCEEDED).count() == 25,
        timeout=60,
        message="every rate-limited job",
    )
    stop(supervisors)
    rows = [tuple(map(float, line.split())) for line in path.read_text().splitlines()]
    attempt_starts = [attempt for attempt, _ in rows]
    assert len(rows) == 25
    assert most_in_window(attempt_starts, 1.0) <= 5
    assert max(attempt_starts) - min(attempt_starts) >= 4.0, "25 starts at 5/s span four full windows"
    # A limited job is claimed only for an idle thread: its code starts right after its claim.
    assert max(started - attempt for attempt, started in rows) < 0.5
    assert set(Job.objects.filter(pk__in=ids).values_list("attempts", flat=True)) == {1}


def test_queue_limits_hold_across_two_supervisors(runworkers, tmp_path):
    limits = {"QUEUE_LIMITS": {"emails": {"concurrency": 2, "rate_limit": "8/s"}}}
    path = tmp_path / "spans"
    with override_settings(BOURBON_JOBS=limits):
        ids = [
            tasks.span.using(queue_name="emails").enqueue({"path": str(path), "seconds": 0.05}).id
            for _ in range(24)
        ]
    plain = [tasks.echo.using(queue_name="emails").enqueue(n).id for n in range(2)]
    assert Job.objects.filter(pk__in=plain, limit_key="").count() == 2, "enqueued without the setting"
    supervisors = two_hosts(runworkers, BOURBON_TEST_SETTINGS=json.dumps(limits))
    wait_until(
        lambda: Job.objects.filter(pk__in=ids, status=JobStatus.SUCCEEDED).count() == 24,
        timeout=60,
        message="every job of the limited queue",
    )
    stop(supervisors)
    rows = [tuple(map(float, line.split())) for line in path.read_text().splitlines()]
    assert len(rows) == 24
    assert max_overlap([(start, end) for _, start, end in rows]) <= 2
    assert most_in_window([attempt for attempt, _, _ in rows], 1.0) <= 8
    assert Limit.objects.get(pk="queue:emails").running == 0


def test_a_circuit_breaker_holds_across_two_supervisors(runworkers, tmp_path):
    down, spans = tmp_path / "down", tmp_path / "spans"
    down.touch()
    payload = {"down": str(down), "spans": str(spans), "seconds": 0.05}
    ids = [tasks.guarded.enqueue(payload).id for _ in range(40)]
    supervisors = two_hosts(runworkers)
    row = wait_until(
        lambda: Limit.objects.filter(pk="task:tests.tasks.guarded", open_until__isnull=False).first(),
        timeout=30,
        message="the circuit to open",
    )
    down.unlink()
    wait_until(
        lambda: not Job.objects.filter(pk__in=ids, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)).exists(),
        timeout=60,
        message="every job to finish once the service is back",
    )
    stop(supervisors)
    jobs = Job.objects.filter(pk__in=ids)
    assert jobs.filter(status=JobStatus.FAILED).count() >= 3
    assert set(jobs.values_list("attempts", flat=True)) == {1}
    # A claim may only take a job once its own `now` is past open_until (the statement checks it),
    # so the jobs stamped from open_until on are exactly those claimed after the cooldown.
    trial, *rest = jobs.filter(last_attempted_at__gte=row.open_until).order_by("last_attempted_at")
    assert trial.status == JobStatus.SUCCEEDED and rest
    # The rest is read on the code's own clock: a timestamp taken by a worker (opened_at, a claim's
    # now) is read before that worker waits for SQLite's write lock, so it can precede what it orders
    # after. An attempt claimed in that instant before the opening commit may still start: 250 ms.
    runs = sorted(tuple(map(float, line.split())) for line in spans.read_text().splitlines())
    opened, until = row.opened_at.timestamp(), row.open_until.timestamp()
    assert not [run for run in runs if opened + 0.25 <= run[0] < until], "nothing started while open"
    reopened = [run for run in runs if run[0] >= until]
    (_, trial_end), (next_start, _) = reopened[0], reopened[1]
    assert next_start >= trial_end, "one trial at a time: nothing else ran until the trial returned"
    assert Limit.objects.get(pk="task:tests.tasks.guarded").open_until is None
