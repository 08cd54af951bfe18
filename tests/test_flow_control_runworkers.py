"""Limits hold across hosts: two ``runworkers`` supervisors, 2 processes x 4 threads each.

Each job appends its own start and end time (epoch seconds) to a file; the test
reads them back and checks the limit on what really ran.
"""

import signal

import pytest

from django_bourbon_jobs.models import Job, JobStatus, Limit
from tests import tasks
from tests.conftest import wait_until
from tests.test_limits import max_overlap

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
    assert len(set(Job.objects.filter(pk__in=limited).values_list("worker_id", flat=True))) >= 2
    assert set(Job.objects.filter(pk__in=limited).values_list("attempts", flat=True)) == {1}
    assert Limit.objects.get(pk="task:tests.tasks.three_at_a_time").running == 0
