"""Periodic schedules fired by real ``runworkers`` supervisors: two at once, downtime, ``--no-periodic``."""

from __future__ import annotations

import json
import signal
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from django_bourbon_jobs.models import Job, JobStatus, PeriodicRun, PeriodicSchedule, ScheduleSource
from tests.conftest import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TICK = {"task": "tests.tasks.tick", "every": 1, "kwargs": {"from": "settings"}}


def with_schedules(schedules: dict, **settings: object) -> str:
    return json.dumps({"POLL_INTERVAL": 0.05, "PERIODIC": schedules, **settings})


def runs_of(name: str) -> list[PeriodicRun]:
    return list(PeriodicRun.objects.filter(schedule__name=name).order_by("scheduled_at"))


def test_two_supervisors_fire_each_time_exactly_once_and_on_time(runworkers):
    env = {"BOURBON_TEST_SETTINGS": with_schedules({"tick": TICK}), "BOURBON_TEST_LOG": "1"}
    supervisors = [runworkers("--processes", "1", **env) for _ in range(2)]
    wait_until(lambda: len(runs_of("tick")) >= 8, timeout=30, message="eight periods")
    for supervisor in supervisors:
        supervisor.signal(signal.SIGTERM)
    for supervisor in supervisors:
        assert supervisor.wait(30) == 0, supervisor.output()
        assert "Traceback" not in supervisor.output() and "failed" not in supervisor.output()
    runs = runs_of("tick")
    times = [run.scheduled_at for run in runs]
    assert times == [times[0] + timedelta(seconds=n) for n in range(len(times))], "every second, none twice"
    assert all(time.microsecond == 0 for time in times)
    lateness = [(run.fired_at - run.scheduled_at).total_seconds() for run in runs]
    assert max(lateness) < 1.0, lateness
    jobs = Job.objects.filter(task_path="tests.tasks.tick")
    assert sorted(str(job.pk) for job in jobs) == sorted(str(run.job_id) for run in runs)
    assert {job.kwargs["from"] for job in jobs} == {"settings"}
    assert PeriodicSchedule.objects.get().source == ScheduleSource.SETTINGS


def past_hours(now: datetime, hours: int) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)


def clear_of_the_hour(margin: timedelta) -> bool:
    """True unless the hour turns within ``margin`` of now, either side."""
    now = timezone.now()
    return past_hours(now - margin, 0) == past_hours(now + margin, 0)


@pytest.mark.parametrize("missed", ["skip", "run_latest"])
def test_after_the_supervisors_were_down_missed_times_follow_the_policy(runworkers, missed):
    """An hourly schedule last seen three hours ago, as a supervisor that ran then left it."""
    entry = {"task": "tests.tasks.tick", "cron": "0 * * * *", "missed": missed, "timezone": "UTC"}
    # What counts as this hour's time must not change while the burst runs.
    wait_until(lambda: clear_of_the_hour(timedelta(seconds=40)), timeout=90, message="the hour to turn")
    started = timezone.now()
    PeriodicSchedule.objects.create(
        name="hourly",
        source=ScheduleSource.SETTINGS,
        task=entry["task"],
        cron=entry["cron"],
        missed=missed,
        timezone="UTC",
        next_run_at=past_hours(started, 2),
    )
    proc = runworkers(
        "--processes",
        "1",
        "--burst",
        BOURBON_TEST_SETTINGS=with_schedules({"hourly": entry}, PERIODIC_GRACE=5),
    )
    assert proc.wait(60) == 0, proc.output()
    grace = timedelta(seconds=5)
    late = [run.scheduled_at for run in runs_of("hourly") if run.scheduled_at < started - grace]
    assert late == ([] if missed == "skip" else [past_hours(started, 0)])
    row = PeriodicSchedule.objects.get()
    assert row.next_run_at == past_hours(started, -1), "then waits for the next hour"
    assert all(Job.objects.get(pk=run.job_id).status == JobStatus.SUCCEEDED for run in runs_of("hourly")), (
        "the burst ran what it fired"
    )


def test_no_periodic_pools_fire_nothing(runworkers):
    """An hourly schedule's time this hour is due (the grace covers the hour): only a firing pool runs it."""
    due = past_hours(timezone.now(), 0)
    PeriodicSchedule.objects.create(
        name="due", task="tests.tasks.tick", every=timedelta(hours=1), next_run_at=due
    )
    env = {"BOURBON_TEST_SETTINGS": with_schedules({}, PERIODIC_GRACE=7200)}
    quiet = runworkers("--processes", "1", "--burst", "--no-periodic", **env)
    assert quiet.wait(60) == 0, quiet.output()
    assert not PeriodicRun.objects.exists()
    assert PeriodicSchedule.objects.get().next_run_at == due
    firing = runworkers("--processes", "1", "--burst", **env)
    assert firing.wait(60) == 0, firing.output()
    run = runs_of("due")[0]
    assert run.scheduled_at == due
    assert Job.objects.get(pk=run.job_id).status == JobStatus.SUCCEEDED
