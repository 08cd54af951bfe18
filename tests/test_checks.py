"""System checks report misconfiguration at start-up, each with a stable id."""

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection, connections
from django.test import override_settings

from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.exceptions import ConfigurationError

pytestmark = pytest.mark.django_db


def ids(**settings):
    with override_settings(**settings):
        return sorted(
            m.id for m in checks.run_checks(include_deployment_checks=False) if m.id.startswith("bourbon")
        )


def test_the_test_settings_pass():
    assert ids() == []


@pytest.mark.parametrize(
    "value, check_id, words",
    [
        ("not a dict", "bourbon_jobs.E001", "must be a dict"),
        ({"LEASE": 5}, "bourbon_jobs.E001", "unknown key 'LEASE'"),
        ({"LEASE_SECONDS": 0}, "bourbon_jobs.E002", "'LEASE_SECONDS'"),
        ({"DEFAULT_MAX_ATTEMPTS": 1.5}, "bourbon_jobs.E002", "'DEFAULT_MAX_ATTEMPTS'"),
        ({"DEFAULT_TIMEOUT": "10"}, "bourbon_jobs.E002", "'DEFAULT_TIMEOUT'"),
        ({"DEFAULT_BACKOFF": "nowhere.backoff"}, "bourbon_jobs.E002", "cannot be imported"),
        ({"HEARTBEAT_SECONDS": 30, "LEASE_SECONDS": 20}, "bourbon_jobs.E002", "shorter than LEASE_SECONDS"),
        ({"WEBHOOK_ALLOWED_PORTS": [443, 0]}, "bourbon_jobs.E002", "list of port numbers"),
        ({"REDIS_NAMESPACE": 7}, "bourbon_jobs.E002", "'REDIS_NAMESPACE'"),
        ({"API_MAX_PAYLOAD_DEPTH": 0}, "bourbon_jobs.E002", "'API_MAX_PAYLOAD_DEPTH'"),
        ({"STATUS_URL_NAME": "no-such-url"}, "bourbon_jobs.E003", "does not reverse"),
        ({"QUEUE_LIMITS": ["emails"]}, "bourbon_jobs.E030", "must be a dict of queue name"),
        ({"QUEUE_LIMITS": {"emails": {"concurrency": 0}}}, "bourbon_jobs.E030", "at least 1"),
        ({"QUEUE_LIMITS": {"emails": {"rate_limit": "10/d"}}}, "bourbon_jobs.E030", "'100/m'"),
        ({"QUEUE_LIMITS": {"emails": {"rate_limit": "10/s", "burst": 2}}}, "bourbon_jobs.E030", "'emails'"),
        ({"QUEUE_LIMITS": {"emails": {}}}, "bourbon_jobs.E030", "'concurrency' and/or 'rate_limit'"),
    ],
)
def test_bad_settings_are_reported(value, check_id, words):
    with override_settings(BOURBON_JOBS=value):
        messages = [m for m in checks.run_checks() if m.id == check_id]
        assert messages and words in messages[0].msg
        with pytest.raises(SystemCheckError):
            call_command("check")


def test_broken_settings_also_raise_when_used():
    with override_settings(BOURBON_JOBS={"BATCH_SIZE": 0}):
        with pytest.raises(ConfigurationError, match="BATCH_SIZE"):
            get_settings()
    assert get_settings().BATCH_SIZE == 32


def test_middleware_without_status_url_or_api_warns():
    assert ids(BOURBON_JOBS={}, ROOT_URLCONF="tests.urls_without_api") == ["bourbon_jobs.W001"]


def test_mounted_api_is_the_status_url_when_none_is_named():
    """tests.urls mounts the API, so replies point at its status route: nothing to warn about."""
    assert ids(BOURBON_JOBS={}) == []


def test_status_url_name_may_be_the_apis_own_route():
    assert ids(BOURBON_JOBS={"STATUS_URL_NAME": "bourbon_jobs_api:job-detail"}) == []


def test_settings_that_are_not_a_dict_are_reported_once():
    assert ids(BOURBON_JOBS="oops") == ["bourbon_jobs.E001"]


def test_good_queue_limits_pass():
    limits = {"emails": {"concurrency": 5, "rate_limit": "10/s"}, "reports": {"rate_limit": "100/h"}}
    assert ids(BOURBON_JOBS={"STATUS_URL_NAME": "job-status", "QUEUE_LIMITS": limits}) == []


def test_backend_without_the_app_installed_is_an_error():
    assert "bourbon_jobs.E005" in ids(INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"])


def test_backend_with_unknown_options_is_an_error():
    tasks_setting = {
        "default": {"BACKEND": "django_bourbon_jobs.backends.DatabaseBackend", "OPTIONS": {"X": 1}}
    }
    assert "bourbon_jobs.E006" in ids(TASKS=tasks_setting)


def test_redis_option_must_name_a_django_redis_cache():
    tasks_setting = {
        "default": {"BACKEND": "django_bourbon_jobs.backends.DatabaseBackend", "OPTIONS": {"REDIS": "nope"}}
    }
    assert "bourbon_jobs.E007" in ids(TASKS=tasks_setting)


def test_wildcard_webhook_host_is_refused():
    assert "bourbon_jobs.E002" in ids(
        BOURBON_JOBS={"WEBHOOK_ALLOWED_HOSTS": ["*"], "STATUS_URL_NAME": "job-status"}
    )


def test_api_task_that_does_not_import_is_an_error():
    assert "bourbon_jobs.E008" in ids(
        BOURBON_JOBS={"API_TASKS": {"x": "tests.tasks.nope"}, "STATUS_URL_NAME": "job-status"}
    )


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's driver")
def test_postgresql_through_psycopg2_is_an_error(monkeypatch):
    from django_bourbon_jobs.checks import check_database

    assert check_database() == []
    monkeypatch.setattr(type(connections["default"]), "Database", type("psycopg2", (), {}))
    [error] = check_database()
    assert error.id == "bourbon_jobs.E009" and "psycopg 3" in error.msg
