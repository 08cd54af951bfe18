"""request.dispatch_async, the 202 reply of dispatch_async_json, and request.get_async_result."""

import json

import pytest
from django.test import override_settings

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
    assert body["status_url"] == f"http://testserver/jobs/{body['job_id']}/"
    assert response["Location"] == body["status_url"]
    assert Job.objects.get(pk=body["job_id"]).args == [{"video": 7}]


@override_settings(BOURBON_JOBS={})
def test_without_a_status_url_name_the_reply_has_no_location(client):
    response = client.post("/process/", "{}", content_type="application/json")
    assert response.status_code == 202
    assert response.json()["status_url"] is None
    assert "Location" not in response


def test_status_view_reads_the_result(client):
    job_id = client.post("/signup/", {"email": "b@example.com"}).json()["job_id"]
    assert client.get(f"/jobs/{job_id}/").json() == {"job_id": job_id, "status": "READY"}
    Job.objects.filter(pk=job_id).update(status=JobStatus.SUCCEEDED)
    assert client.get(f"/jobs/{job_id}/").json()["status"] == "SUCCESSFUL"


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
