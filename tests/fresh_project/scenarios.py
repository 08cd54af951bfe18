"""What a newcomer does first, in the project the docs describe (run by tests/test_fresh_project.py)."""

import uuid

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

API = "/api/jobs/"


@pytest.fixture
def client() -> APIClient:
    client = APIClient()
    client.force_login(User.objects.create_user("newcomer"))  # a session, as a browser has
    return client


def test_manage_py_check_finds_nothing(capsys):
    call_command("check", fail_level="WARNING")
    assert "no issues" in capsys.readouterr().out


def test_the_schema_answers_in_yaml_and_json(client):
    yaml = client.get(f"{API}schema/")
    assert yaml.status_code == 200 and yaml.content.startswith(b"openapi: 3")
    paths = client.get(f"{API}schema/?format=json").json()["paths"]
    assert f"{API}{{id}}/" in paths and "post" in paths[API]


def test_dispatch_and_follow_the_status_url(client):
    reply = client.post(API, {"task": "echo", "payload": {"n": 1}}, format="json")
    assert reply.status_code == 202, reply.content
    status = client.get(reply.json()["status_url"])
    assert status.status_code == 200 and status.json()["status"] == "queued"


def test_a_view_of_ones_own_points_at_the_apis_status_url(client):
    reply = client.post("/process/", {"n": 1}, format="json")
    assert reply.status_code == 202
    assert reply.json()["status_url"] == f"http://testserver{API}{reply.json()['job_id']}/"


@pytest.mark.parametrize("job_id", ["garbage", str(uuid.uuid4())])
def test_a_malformed_or_unknown_id_is_a_json_404(client, job_id):
    response = client.get(f"{API}{job_id}/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json" and "detail" in response.json()


@pytest.mark.django_db(transaction=True)
def test_a_dispatched_job_runs_in_the_test_with_the_testing_helpers(client):
    """docs/testing.md, on the test database Django gives a new SQLite project (in memory)."""
    from django_bourbon_jobs import dispatch_async
    from django_bourbon_jobs.testing import assert_dispatched, drain, run_immediately
    from tests import tasks

    result = dispatch_async(tasks.echo, {"n": 1})
    assert assert_dispatched(tasks.echo, {"n": 1}).id == result.id
    [ran] = drain()
    assert (ran.id, ran.return_value) == (result.id, {"n": 1})
    with run_immediately():
        reply = client.post(API, {"task": "echo", "payload": {"n": 2}}, format="json")
    assert client.get(reply.json()["status_url"]).json()["result"] == {"n": 2}
