"""Periodic schedules in the admin, through the test client: add, edit, pause, resume, run now, read-only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission, User
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from django_bourbon_jobs.models import Job, JobStatus, PeriodicRun, PeriodicSchedule, ScheduleSource
from django_bourbon_jobs.periodic.firing import fire
from django_bourbon_jobs.periodic.sync import sync_settings_schedules

pytestmark = pytest.mark.django_db

LIST = reverse("admin:bourbon_jobs_periodicschedule_changelist")
ADD = reverse("admin:bourbon_jobs_periodicschedule_add")


def change_url(schedule: PeriodicSchedule) -> str:
    return reverse("admin:bourbon_jobs_periodicschedule_change", args=[schedule.pk])


def run_url(schedule: PeriodicSchedule) -> str:
    return reverse("admin:bourbon_jobs_periodicschedule_run", args=[schedule.pk])


def form(**fields: object) -> dict[str, object]:
    return {
        "name": "report",
        "task": "tests.tasks.tick",
        "enabled": "on",
        "cron": "",
        "every": "",
        "timezone": "",
        "missed": "skip",
        "args": "[]",
        "kwargs": "{}",
        "queue_name": "",
        "priority": "",
        **fields,
    }


def schedule(**fields: object) -> PeriodicSchedule:
    values = {"name": "poll", "task": "tests.tasks.tick", "every": timedelta(minutes=5), **fields}
    return PeriodicSchedule.objects.create(**values)


@pytest.fixture
def declared():
    """A schedule from ``BOURBON_JOBS["PERIODIC"]``, synced into the database."""
    periodic = {"nightly": {"task": "tests.tasks.tick", "cron": "0 3 * * *", "timezone": "Europe/Paris"}}
    with override_settings(BOURBON_JOBS={"PERIODIC": periodic}):
        sync_settings_schedules()
    return PeriodicSchedule.objects.get(name="nightly")


def action(client, name: str, schedules: list[PeriodicSchedule]):
    data = {"action": name, ACTION_CHECKBOX_NAME: [s.pk for s in schedules]}
    return client.post(LIST, data, follow=True)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_the_list_shows_when_next_last_run_and_the_last_job(admin_client, declared):
    row = schedule(kwargs={"limit": 5})
    job_id = fire(row, timezone.now(), timezone.now(), "default")
    Job.objects.filter(pk=job_id).update(status=JobStatus.SUCCEEDED)
    page = admin_client.get(LIST).content.decode()
    assert "every 5 min" in page and "0 3 * * * (Europe/Paris)" in page
    assert reverse("admin:bourbon_jobs_job_change", args=[job_id]) in page
    assert "bourbon-status-succeeded" in page
    assert "Settings (read-only)" in page and "Admin" in page


def test_adding_a_schedule_sets_its_next_run(admin_client):
    response = admin_client.post(ADD, form(cron="*/15 * * * *", timezone="Europe/Paris"), follow=True)
    assert response.status_code == 200
    row = PeriodicSchedule.objects.get(name="report")
    assert (row.source, row.cron, row.timezone) == (ScheduleSource.DATABASE, "*/15 * * * *", "Europe/Paris")
    assert timezone.now() < row.next_run_at <= timezone.now() + timedelta(minutes=15)
    assert row.next_run_at.minute % 15 == 0 and row.next_run_at.second == 0


def test_an_interval_is_given_in_seconds(admin_client):
    admin_client.post(ADD, form(every="30"))
    assert PeriodicSchedule.objects.get().every == timedelta(seconds=30)


@pytest.mark.parametrize(
    "fields, field, words",
    [
        ({"cron": "61 * * * *"}, "cron", "not a valid cron expression"),
        ({"cron": "5-5 * * * *"}, "cron", "ends are equal"),
        ({"cron": "@daily", "every": "60"}, None, "not both"),
        ({}, None, "Give a cron expression or an interval"),
        ({"every": "0.5"}, "every", "at least one second"),
        ({"every": "30", "task": "tests.tasks.nowhere"}, "task", "No task can be imported"),
        ({"every": "30", "task": "tests.tasks.not_a_task"}, "task", "is not a Task"),
        ({"every": "30", "timezone": "Mars/Olympus"}, "timezone", "not a known time zone"),
        ({"every": "30", "args": '{"a": 1}'}, "args", "must be a list"),
        ({"every": "30", "kwargs": "[1]"}, "kwargs", "must be a dict"),
        ({"every": "30", "priority": "500"}, "priority", "priority"),
    ],
)
def test_a_bad_schedule_is_refused_with_the_reason_on_its_field(admin_client, fields, field, words):
    response = admin_client.post(ADD, form(**fields))
    assert response.status_code == 200 and not PeriodicSchedule.objects.exists()
    errors = response.context["adminform"].form.errors
    assert words in " ".join(errors.get(field or "__all__", [])), errors


def test_editing_the_timing_reschedules_but_other_edits_do_not(admin_client):
    kept = timezone.now() + timedelta(minutes=3, seconds=7)
    row = schedule(next_run_at=kept)
    admin_client.post(change_url(row), form(name="poll", every="300", kwargs='{"limit": 9}'))
    row.refresh_from_db()
    assert (row.kwargs, row.next_run_at) == ({"limit": 9}, kept)
    admin_client.post(change_url(row), form(name="poll", every="60"))
    row.refresh_from_db()
    assert row.every == timedelta(minutes=1) and row.next_run_at != kept
    assert row.next_run_at.second == 0 and row.next_run_at - timezone.now() <= timedelta(minutes=1)


def test_pause_and_resume_leave_settings_schedules_alone(admin_client, declared):
    mine = schedule(next_run_at=timezone.now() - timedelta(hours=3))
    response = action(admin_client, "pause_selected", [mine, declared])
    assert messages_of(response) == [
        "Paused 1 schedule(s). 1 from settings left as they are: change them in BOURBON_JOBS."
    ]
    mine.refresh_from_db(), declared.refresh_from_db()
    assert (mine.enabled, declared.enabled) == (False, True)
    action(admin_client, "resume_selected", [mine])
    mine.refresh_from_db()
    assert mine.enabled and mine.next_run_at > timezone.now(), "the paused hours are not missed runs"


def test_run_now_from_the_page_enqueues_a_job_and_says_which(admin_client, declared):
    response = admin_client.post(run_url(declared), follow=True)
    [run] = PeriodicRun.objects.all()
    assert run.manual and Job.objects.filter(pk=run.job_id, task_path="tests.tasks.tick").exists()
    job_page = reverse("admin:bourbon_jobs_job_change", args=[run.job_id])
    assert messages_of(response) == [f'Enqueued job <a href="{job_page}">{run.job_id}</a>.']
    declared.refresh_from_db()
    assert declared.last_job_id == run.job_id
    assert admin_client.get(run_url(declared)).status_code == 405


def test_run_now_as_an_action(admin_client, declared):
    mine = schedule()
    response = action(admin_client, "run_selected_now", [mine, declared])
    assert messages_of(response) == ["Enqueued 2 job(s)."]
    assert Job.objects.filter(task_path="tests.tasks.tick").count() == 2


def test_a_settings_schedule_is_read_only_and_cannot_be_deleted(admin_client, declared):
    page = admin_client.get(change_url(declared)).content.decode()
    assert "change it in the settings" in page and "Run now" in page
    assert 'name="_save"' not in page
    response = admin_client.post(change_url(declared), form(name="nightly", cron="0 4 * * *"))
    assert response.status_code == 403
    declared.refresh_from_db()
    assert declared.cron == "0 3 * * *"
    delete = reverse("admin:bourbon_jobs_periodicschedule_delete", args=[declared.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert PeriodicSchedule.objects.filter(pk=declared.pk).exists()


def test_an_admin_schedule_shows_its_recent_runs(admin_client):
    row = schedule()
    scheduled_at = timezone.now() - timedelta(minutes=5)
    first = fire(row, scheduled_at, timezone.now(), "default")
    page = admin_client.get(change_url(row)).content.decode()
    assert 'name="_save"' in page and "Run now" in page
    assert str(first) in page and "scheduled" in page
    assert scheduled_at.strftime("%Y-%m-%d %H:%M:%S UTC") in page


def test_staff_who_may_only_view_cannot_run_or_change(client, declared):
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_periodicschedule"))
    client.force_login(user)
    page = client.get(change_url(declared)).content.decode()
    assert "Run now" not in page
    assert client.post(run_url(declared)).status_code == 403
    assert not Job.objects.exists()
