"""The URLs the README and docs/api.md show, together: a status view of one's own, and the API."""

from django.urls import include, path

from tests import views

urlpatterns = [
    path("process/", views.process),
    path("jobs/<str:job_id>/", views.job_status, name="job-status"),
    path("api/jobs/", include("django_bourbon_jobs.api.urls")),
]
