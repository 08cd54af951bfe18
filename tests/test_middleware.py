"""request.dispatch_async, the 202 reply of dispatch_async_json, and request.get_async_result."""

import json

import pytest
from django.contrib.auth.models import Permission
from django.test import override_settings

from django_bourbon_jobs.middleware import status_token
from django_bourbon_jobs.models import Job, JobStatus

pytestmark = pytest.mark.django_db


def test_view_dispatches_and_returns_the_job_id(client):
    response = client.post("/signup/", {"email": "a@example.com"})
    assert response.status_code == 200
    job = Job.objects.get(pk=response.json()["job_id"])
    assert job.args == [{"email": "a@example.com"}]


def test_dispatch_async_json_answers_202_with_location(client):
    response = client.post("/process/", json.dumps({"video": 7}), content_type="application/json")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    token = status_token(body["job_id"])
    assert body["status_url"] == f"http://testserver/jobs/{body['job_id']}/?token={token}"
    assert response["Location"] == body["status_url"]
    assert Job.objects.get(pk=body["job_id"]).args == [{"video": 7}]


@override_settings(BOURBON_JOBS={}, ROOT_URLCONF="tests.urls_without_api")
def test_without_a_status_url_name_or_the_api_the_reply_has_no_location(client):
    response = client.post("/process/", "{}", content_type="application/json")
    assert response.status_code == 202
    assert response.json()["status_url"] is None
    assert "Location" not in response


@override_settings(BOURBON_JOBS={})
def test_without_a_status_url_name_the_reply_points_at_the_mounted_api(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("ada"))
    response = client.post("/process/", "{}", content_type="application/json")
    body = response.json()
    assert body["status_url"] == f"http://testserver/api/jobs/{body['job_id']}/"
    assert response["Location"] == body["status_url"]
    assert client.get(body["status_url"]).json()["status"] == "queued"


@override_settings(BOURBON_JOBS={})
def test_an_anonymous_caller_gets_no_api_url_it_could_not_read(client):
    """The API answers signed-in users only; the status token is honoured by views of the project's own."""
    body = client.post("/process/", "{}", content_type="application/json").json()
    assert body["status_url"] is None
    assert client.get(f"/api/jobs/{body['job_id']}/").status_code in (401, 403)


@override_settings(BOURBON_JOBS={"STATUS_URL_NAME": "bourbon_jobs_api:job-detail"})
def test_status_url_name_may_name_the_apis_route(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("ada"))
    body = client.post("/process/", "{}", content_type="application/json").json()
    assert body["status_url"] == f"http://testserver/api/jobs/{body['job_id']}/"
    assert client.get(body["status_url"]).json()["job_id"] == body["job_id"]


def test_status_view_reads_the_result_through_the_status_url(client):
    body = client.post("/process/", "{}", content_type="application/json").json()
    job_id, url = body["job_id"], body["status_url"]
    assert client.get(url).json() == {"job_id": job_id, "status": "READY"}
    Job.objects.filter(pk=job_id).update(status=JobStatus.SUCCEEDED)
    assert client.get(url).json()["status"] == "SUCCESSFUL"


def test_a_job_is_read_only_by_who_may_see_it(client, django_user_model):
    """The dispatcher, view_job, or the status URL's token; for anyone else it does not exist."""
    ada, bob = (django_user_model.objects.create_user(name) for name in ("ada", "bob"))
    client.force_login(ada)
    reply = client.post("/process/", "{}", content_type="application/json").json()
    job_id = reply["job_id"]
    assert reply["status_url"] == f"http://testserver/jobs/{job_id}/", "a user's URL carries no token"
    assert client.get(f"/jobs/{job_id}/").status_code == 200
    client.force_login(bob)
    assert client.get(f"/jobs/{job_id}/").status_code == 404
    assert client.get(f"/jobs/{job_id}/?token={status_token(job_id)[:-1]}x").status_code == 404
    assert client.get(f"/jobs/{job_id}/?token={status_token(job_id)}").status_code == 200
    bob.user_permissions.add(Permission.objects.get(codename="view_job"))
    client.force_login(django_user_model.objects.get(pk=bob.pk))
    assert client.get(f"/jobs/{job_id}/").status_code == 200
    client.logout()
    assert client.get(f"/jobs/{job_id}/").status_code == 404
    anonymous_job = client.post("/signup/", {"email": "x@example.com"}).json()["job_id"]
    assert client.get(f"/jobs/{anonymous_job}/").status_code == 404, "an id alone is not enough"


def test_status_view_of_unknown_id_is_404(client):
    assert client.get("/jobs/01a20856-1b7d-79ea-ab93-c261e11612f5/").status_code == 404
    assert client.get("/jobs/garbage/").status_code == 404


def test_the_requests_user_is_recorded_as_dispatcher(client, django_user_model):
    user = django_user_model.objects.create_user("ada", password="pw")
    anonymous_job = client.post("/signup/", {"email": "x@example.com"}).json()["job_id"]
    client.force_login(user)
    job_id = client.post("/signup/", {"email": "a@example.com"}).json()["job_id"]
    json_job = client.post("/process/", "{}", content_type="application/json").json()["job_id"]
    assert Job.objects.get(pk=job_id).dispatched_by == user
    assert Job.objects.get(pk=json_job).dispatched_by == user
    assert Job.objects.get(pk=anonymous_job).dispatched_by is None
