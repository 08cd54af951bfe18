"""``BOURBON_JOBS["PERIODIC"]``: every key of every schedule is checked at start-up, each with its id."""

from datetime import timedelta

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

pytestmark = pytest.mark.django_db

GOOD = {"task": "tests.tasks.tick", "cron": "0 3 * * *"}


def periodic_messages(schedules):
    with override_settings(BOURBON_JOBS={"STATUS_URL_NAME": "job-status", "PERIODIC": schedules}):
        return [m for m in checks.run_checks() if m.id.startswith("bourbon_jobs.")]


def test_good_schedules_pass():
    schedules = {
        "nightly": {**GOOD, "timezone": "Europe/Paris", "missed": "run_latest", "enabled": False},
        "poll": {"task": "tests.tasks.tick", "every": 30, "args": [1], "kwargs": {"limit": 50}},
        "hourly": {"task": "tests.tasks.routed_tick", "cron": "@hourly", "queue_name": "q", "priority": 3},
        "delta": {"task": "tests.tasks.tick", "every": timedelta(minutes=5)},
        "fraction": {"task": "tests.tasks.tick", "every": 1.5},
    }
    assert periodic_messages(schedules) == []


@pytest.mark.parametrize(
    "entry, check_id, words",
    [
        ("not a dict", "bourbon_jobs.E020", "must be a dict with 'task'"),
        ({**GOOD, "tz": "UTC"}, "bourbon_jobs.E020", "unknown key 'tz'"),
        ({"cron": "0 3 * * *"}, "bourbon_jobs.E021", "['task'] must be the dotted path"),
        ({**GOOD, "task": "tests.tasks.nope"}, "bourbon_jobs.E021", "No task can be imported"),
        ({**GOOD, "task": "tests.tasks.not_a_task"}, "bourbon_jobs.E021", "is not a Task"),
        ({"task": "tests.tasks.tick"}, "bourbon_jobs.E022", "needs 'cron' or 'every'"),
        ({**GOOD, "every": 10}, "bourbon_jobs.E022", "both 'cron' and 'every'"),
        ({**GOOD, "cron": "0 3 * *"}, "bourbon_jobs.E023", "five fields"),
        ({**GOOD, "cron": "0 25 * * *"}, "bourbon_jobs.E023", "not a valid cron expression"),
        ({**GOOD, "cron": "@often"}, "bourbon_jobs.E023", "not a known alias"),
        ({**GOOD, "cron": "5-5 3 * * *"}, "bourbon_jobs.E023", "ends are equal"),
        ({"task": "tests.tasks.tick", "every": 0}, "bourbon_jobs.E024", "at least one second"),
        ({"task": "tests.tasks.tick", "every": "30"}, "bourbon_jobs.E024", "a number of seconds"),
        ({"task": "tests.tasks.tick", "every": True}, "bourbon_jobs.E024", "a number of seconds"),
        ({**GOOD, "timezone": "Mars/Olympus"}, "bourbon_jobs.E025", "not a known time zone"),
        ({**GOOD, "timezone": ""}, "bourbon_jobs.E025", "the name of a time zone"),
        ({**GOOD, "args": {"a": 1}}, "bourbon_jobs.E026", "['args'] must be a list"),
        ({**GOOD, "kwargs": [1]}, "bourbon_jobs.E026", "['kwargs'] must be a dict"),
        ({**GOOD, "kwargs": {"when": object()}}, "bourbon_jobs.E026", "JSON-serialisable"),
        ({**GOOD, "missed": "catch_up"}, "bourbon_jobs.E027", "'skip', 'run_latest'"),
        ({**GOOD, "priority": 1000}, "bourbon_jobs.E028", "priority"),
        ({**GOOD, "priority": "high"}, "bourbon_jobs.E028", "whole number"),
        ({**GOOD, "queue_name": 5}, "bourbon_jobs.E028", "queue name"),
        ({**GOOD, "enabled": "yes"}, "bourbon_jobs.E028", "True or False"),
    ],
)
def test_each_bad_key_is_reported_with_its_id_and_name(entry, check_id, words):
    messages = periodic_messages({"nightly": entry})
    assert [m.id for m in messages] == [check_id], [m.msg for m in messages]
    assert words in messages[0].msg and "BOURBON_JOBS['PERIODIC']['nightly']" in messages[0].msg
    with override_settings(BOURBON_JOBS={"STATUS_URL_NAME": "job-status", "PERIODIC": {"nightly": entry}}):
        with pytest.raises(SystemCheckError):
            call_command("check")


def test_a_bad_name_is_reported():
    [message] = periodic_messages({"": GOOD})
    assert message.id == "bourbon_jobs.E020" and "schedule name ''" in message.msg


def test_periodic_that_is_not_a_dict_is_a_settings_error():
    [message] = periodic_messages(["nightly"])
    assert message.id == "bourbon_jobs.E002" and "'PERIODIC'" in message.msg


def test_a_queue_the_backend_does_not_list_is_refused():
    tasks = {"default": {"BACKEND": "django_bourbon_jobs.backends.DatabaseBackend", "QUEUES": ["default"]}}
    with override_settings(TASKS=tasks):
        messages = periodic_messages({"nightly": {**GOOD, "queue_name": "elsewhere"}})
    assert [m.id for m in messages] == ["bourbon_jobs.E028"] and "elsewhere" in messages[0].msg


def test_grace_must_be_positive():
    with override_settings(BOURBON_JOBS={"STATUS_URL_NAME": "job-status", "PERIODIC_GRACE": 0}):
        messages = [m for m in checks.run_checks() if m.id.startswith("bourbon_jobs.")]
    assert [m.id for m in messages] == ["bourbon_jobs.E002"] and "PERIODIC_GRACE" in messages[0].msg
