"""Periodic schedules fired in-process, on a fixed clock: what is due, exactly once, missed times, sync.

The supervisors' side (two real ``runworkers`` racing, ``--no-periodic``) is in
``test_periodic_runworkers.py``; the admin in ``test_periodic_admin.py``.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections
from django.test import override_settings

from django_bourbon_jobs.models import Job, PeriodicRun, PeriodicSchedule, ScheduleSource
from django_bourbon_jobs.periodic import firing
from django_bourbon_jobs.periodic.control import run_now
from django_bourbon_jobs.periodic.firing import PeriodicFirer, fire, plan_runs
from django_bourbon_jobs.periodic.sync import sync_settings_schedules
from django_bourbon_jobs.periodic.timing import CronTiming, IntervalTiming
from tests.conftest import is_postgres

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
GRACE = timedelta(seconds=60)
SECOND = timedelta(seconds=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def schedule(**fields) -> PeriodicSchedule:
    values = {"name": "tick", "task": "tests.tasks.tick", "every": timedelta(seconds=10), **fields}
    return PeriodicSchedule.objects.create(**values)


def jobs_of(task: str = "tests.tasks.tick") -> list[Job]:
    return list(Job.objects.filter(task_path=task).order_by("enqueued_at"))


def scheduled_times(row: PeriodicSchedule) -> list[datetime]:
    return list(
        PeriodicRun.objects.filter(schedule=row)
        .order_by("scheduled_at")
        .values_list("scheduled_at", flat=True)
    )


# --- plan_runs: what one pass fires ------------------------------------------------------------

EVERY_10 = IntervalTiming(timedelta(seconds=10))


def test_nothing_is_due_before_the_cursor():
    plan = plan_runs(EVERY_10, at(10), at(9.9), GRACE, "skip")
    assert (plan.fire, plan.cursor, plan.missed) == ([], at(10), None)


def test_a_due_time_fires_and_the_cursor_moves_past_now():
    plan = plan_runs(EVERY_10, at(10), at(10.2), GRACE, "skip")
    assert (plan.fire, plan.cursor, plan.missed) == ([at(10)], at(20), None)


def test_times_late_within_the_grace_all_fire():
    plan = plan_runs(EVERY_10, at(10), at(45), GRACE, "skip")
    assert plan.fire == [at(10), at(20), at(30), at(40)] and plan.cursor == at(50)


@pytest.mark.parametrize("missed, fired_late", [("skip", []), ("run_latest", [at(1130)])])
def test_times_later_than_the_grace_are_missed(missed, fired_late):
    plan = plan_runs(EVERY_10, at(10), at(1200), GRACE, missed)
    assert plan.missed == (at(10), at(1130))
    assert plan.fire == [*fired_late, at(1140), at(1150), at(1160), at(1170), at(1180), at(1190), at(1200)]
    assert plan.cursor == at(1210)


def test_a_daily_cron_after_hours_down_skips_or_runs_the_last_once():
    daily = CronTiming("0 3 * * *", "UTC")
    cursor, now = datetime(2026, 6, 1, 3, tzinfo=UTC), datetime(2026, 6, 3, 9, tzinfo=UTC)
    assert plan_runs(daily, cursor, now, GRACE, "skip").fire == []
    assert plan_runs(daily, cursor, now, GRACE, "run_latest").fire == [datetime(2026, 6, 3, 3, tzinfo=UTC)]
    assert plan_runs(daily, cursor, now, GRACE, "skip").cursor == datetime(2026, 6, 4, 3, tzinfo=UTC)


def test_one_pass_fires_a_bounded_number():
    plan = plan_runs(IntervalTiming(SECOND), at(1), at(59), GRACE, "skip")
    assert len(plan.fire) == 59
    plan = plan_runs(IntervalTiming(SECOND), at(1), at(59), timedelta(seconds=600), "skip")
    capped = plan_runs(IntervalTiming(timedelta(milliseconds=100)), at(1), at(59), GRACE, "skip")
    assert len(capped.fire) == firing.CATCH_UP_PER_PASS and capped.cursor == capped.fire[-1] + timedelta(
        milliseconds=100
    )


# --- the firer on a fixed clock --------------------------------------------------------------


def test_the_firer_enqueues_a_due_run_once_with_its_arguments_and_says_when_to_call_again():
    row = schedule(next_run_at=at(10), args=[1, "two"], kwargs={"three": 3})
    firer = PeriodicFirer()
    assert firer.run_once(at(9.5)) == pytest.approx(0.5)
    assert not jobs_of()
    assert firer.run_once(at(10.01)) == pytest.approx(1.0), "at most a second between looks"
    [job] = jobs_of()
    assert (job.args, job.kwargs, job.queue_name, job.priority) == ([1, "two"], {"three": 3}, "default", 0)
    firer.run_once(at(10.5))
    assert len(jobs_of()) == 1, "the same time does not fire twice"
    row.refresh_from_db()
    assert (row.next_run_at, row.last_run_at, row.last_job_id) == (at(20), at(10), job.pk)
    [run] = row.runs.all()
    assert (run.scheduled_at, run.fired_at, run.job_id, run.manual) == (at(10), at(10.01), job.pk, False)


def test_the_firer_waits_for_the_soonest_schedule():
    schedule(name="a", every=timedelta(seconds=10), next_run_at=at(10))
    schedule(name="b", every=timedelta(seconds=3), next_run_at=at(9.7))
    assert PeriodicFirer().run_once(at(9.5)) == pytest.approx(0.2)


def test_queue_and_priority_default_to_the_tasks_own_or_are_set_per_schedule():
    schedule(name="own", task="tests.tasks.routed_tick", next_run_at=at(10))
    schedule(name="set", task="tests.tasks.routed_tick", next_run_at=at(10), queue_name="urgent", priority=-5)
    PeriodicFirer().run_once(at(10))
    routes = {(job.queue_name, job.priority) for job in jobs_of("tests.tasks.routed_tick")}
    assert routes == {("reports", 7), ("urgent", -5)}


def test_a_new_schedule_waits_for_its_first_time_from_now():
    row = schedule(every=timedelta(seconds=30))
    PeriodicFirer().run_once(at(10))
    row.refresh_from_db()
    assert row.next_run_at == at(30) and not jobs_of()


def test_two_firers_at_the_same_moment_enqueue_one_job():
    schedule(next_run_at=at(10))
    first, second = PeriodicFirer(), PeriodicFirer()
    first.run_once(at(10))
    PeriodicSchedule.objects.update(
        next_run_at=at(10)
    )  # the second read the schedule before the first moved it
    second.run_once(at(10.3))
    assert len(jobs_of()) == 1


def test_a_time_fires_once_however_often_it_is_tried():
    row = schedule()
    assert fire(row, at(10), at(10), "default") is not None
    assert fire(row, at(10), at(11), "default") is None
    assert len(jobs_of()) == 1 and PeriodicRun.objects.count() == 1


@pytest.mark.parametrize("missed, runs", [("skip", []), ("run_latest", [at(3540)])])
def test_after_downtime_missed_times_are_skipped_or_the_latest_runs_once(missed, runs, caplog):
    row = schedule(missed=missed, every=timedelta(minutes=1), next_run_at=at(60))
    with caplog.at_level(logging.WARNING, logger="django_bourbon_jobs.periodic"):
        PeriodicFirer().run_once(at(3600 + 50))  # down for an hour; 3600 is 50 s late: within the grace
    assert scheduled_times(row) == [*runs, at(3600)]
    row.refresh_from_db()
    assert row.next_run_at == at(3660)
    assert f"'tick': missed {at(60).isoformat()} to {at(3540).isoformat()}" in caplog.text


def test_disabled_schedules_do_not_fire():
    schedule(enabled=False, next_run_at=at(10))
    PeriodicFirer().run_once(at(10))
    assert not jobs_of()


def test_a_schedule_whose_task_is_gone_is_logged_and_the_others_still_fire(caplog):
    gone = schedule(name="gone", task="tests.tasks.no_such_task", next_run_at=at(10))
    schedule(name="fine", next_run_at=at(10))
    with caplog.at_level(logging.ERROR, logger="django_bourbon_jobs.periodic"):
        PeriodicFirer().run_once(at(10))
    assert len(jobs_of()) == 1
    assert "'gone': could not enqueue its job" in caplog.text and "no_such_task" in caplog.text
    gone.refresh_from_db()
    assert gone.next_run_at == at(20) and not gone.runs.exists()


def test_run_now_enqueues_at_once_and_again():
    row = schedule(next_run_at=at(10), kwargs={"by": "hand"})
    first, second = run_now(row), run_now(row)
    assert first != second and [job.pk for job in jobs_of()] == [first, second]
    row.refresh_from_db()
    assert row.last_job_id == second and row.next_run_at == at(10), "the schedule's own times are unchanged"
    assert list(row.runs.values_list("manual", flat=True)) == [True, True]


def test_old_runs_are_pruned():
    row = schedule()
    fire(row, at(10), at(10), "default")
    fire(row, at(10) + firing.RUN_HISTORY + MINUTE, at(10), "default")
    assert firing.prune_runs(at(10) + firing.RUN_HISTORY + 2 * MINUTE, "default") == 1
    assert scheduled_times(row) == [at(10) + firing.RUN_HISTORY + MINUTE]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    "os.environ.get('BOURBON_TEST_DB') != 'postgres'", reason="concurrent writers: PostgreSQL"
)
def test_firers_racing_on_separate_connections_enqueue_one_job_per_time(monkeypatch):
    """Eight threads, each its own connection, fire the same 59 times at once: 59 jobs."""
    assert is_postgres()
    schedule(every=SECOND, next_run_at=at(1))
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []
    refused = []
    claim = firing._claim

    def counting_claim(*args, **kwargs):
        run = claim(*args, **kwargs)
        if run is None:
            refused.append(args[1])
        return run

    monkeypatch.setattr(firing, "_claim", counting_claim)

    def race() -> None:
        try:
            barrier.wait(10)
            PeriodicFirer().run_once(at(59))
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    row = PeriodicSchedule.objects.get()
    assert scheduled_times(row) == [at(s) for s in range(1, 60)]
    assert len(jobs_of()) == 59
    assert set(PeriodicRun.objects.values_list("job_id", flat=True)) == {job.pk for job in jobs_of()}
    assert refused, "the firers did race: the constraint turned some away"


# --- settings' schedules -----------------------------------------------------------------------

PERIODIC = {
    "nightly": {"task": "tests.tasks.tick", "cron": "0 3 * * *", "timezone": "Europe/Paris"},
    "poll": {"task": "tests.tasks.tick", "every": 30, "kwargs": {"limit": 50}, "missed": "run_latest"},
}


def periodic(schedules):
    return override_settings(BOURBON_JOBS={"PERIODIC": schedules})


def test_settings_schedules_become_read_only_rows_with_their_next_run():
    with periodic(PERIODIC):
        sync_settings_schedules(now=T0)
    rows = {row.name: row for row in PeriodicSchedule.objects.all()}
    assert {row.source for row in rows.values()} == {ScheduleSource.SETTINGS}
    assert rows["nightly"].next_run_at == datetime(2026, 6, 2, 1, tzinfo=UTC), "03:00 in Paris, summer time"
    assert (rows["poll"].every, rows["poll"].kwargs, rows["poll"].missed) == (
        timedelta(seconds=30),
        {"limit": 50},
        "run_latest",
    )
    assert rows["poll"].next_run_at == at(30)


def test_a_changed_settings_schedule_is_updated_and_a_removed_one_deleted():
    with periodic(PERIODIC):
        sync_settings_schedules(now=T0)
    fire(PeriodicSchedule.objects.get(name="poll"), at(30), at(30), "default")
    changed = {"poll": {**PERIODIC["poll"], "every": 60, "args": [1]}}
    with periodic(changed):
        sync_settings_schedules(now=at(100))
    row = PeriodicSchedule.objects.get()
    assert (row.name, row.every, row.args) == ("poll", timedelta(seconds=60), [1])
    assert row.next_run_at == at(120), "a new interval counts from now"
    assert row.last_run_at == at(30), "its history stays"


def test_an_unchanged_sync_writes_nothing():
    with periodic(PERIODIC):
        sync_settings_schedules(now=T0)
        before = {row.name: row.updated_at for row in PeriodicSchedule.objects.all()}
        sync_settings_schedules(now=at(1000))
    assert {row.name: row.updated_at for row in PeriodicSchedule.objects.all()} == before
    assert PeriodicSchedule.objects.get(name="poll").next_run_at == at(30), "nothing rescheduled"


def test_settings_take_over_an_admin_schedule_of_the_same_name():
    schedule(name="poll", every=timedelta(seconds=5))
    with periodic({"poll": PERIODIC["poll"]}):
        sync_settings_schedules(now=T0)
    row = PeriodicSchedule.objects.get()
    assert (row.source, row.every) == (ScheduleSource.SETTINGS, timedelta(seconds=30))


def test_an_invalid_settings_schedule_is_left_out_and_logged(caplog):
    with periodic({"bad": {"task": "tests.tasks.tick", "cron": "61 * * * *"}, "poll": PERIODIC["poll"]}):
        with caplog.at_level(logging.ERROR, logger="django_bourbon_jobs.periodic"):
            sync_settings_schedules(now=T0)
    assert list(PeriodicSchedule.objects.values_list("name", flat=True)) == ["poll"]
    assert "'bad' left out" in caplog.text


def test_a_settings_schedule_broken_by_a_deploy_keeps_its_row_and_history():
    with periodic(PERIODIC):
        sync_settings_schedules(now=T0)
    fire(PeriodicSchedule.objects.get(name="poll"), at(30), at(30), "default")
    with periodic({**PERIODIC, "poll": {**PERIODIC["poll"], "task": "tests.tasks.renamed"}}):
        sync_settings_schedules(now=at(100))
    row = PeriodicSchedule.objects.get(name="poll")
    assert (row.task, row.last_run_at, row.runs.count()) == ("tests.tasks.tick", at(30), 1)


def test_the_first_firer_pass_syncs_the_settings():
    with periodic({"poll": PERIODIC["poll"]}):
        PeriodicFirer().run_once(at(10))
        PeriodicFirer().run_once(at(30))
    assert len(jobs_of()) == 1 and jobs_of()[0].kwargs == {"limit": 50}


def test_migrate_syncs_the_settings():
    from django_bourbon_jobs.apps import _sync_periodic_schedules

    with periodic({"poll": PERIODIC["poll"]}):
        _sync_periodic_schedules(using=connection.alias)
    assert PeriodicSchedule.objects.get().source == ScheduleSource.SETTINGS


def test_a_sync_that_breaks_is_logged_once_and_the_database_schedules_still_fire(monkeypatch, caplog):
    def broken_sync(*args, **kwargs):
        raise RuntimeError("reports/tasks.py failed to import")

    monkeypatch.setattr(firing, "sync_settings_schedules", broken_sync)
    schedule(next_run_at=at(10))
    firer = PeriodicFirer()
    with caplog.at_level(logging.ERROR, logger="django_bourbon_jobs.periodic"):
        firer.run_once(at(10))
        firer.run_once(at(20))
    assert len(jobs_of()) == 2
    assert caplog.text.count("could not copy BOURBON_JOBS['PERIODIC']") == 1
