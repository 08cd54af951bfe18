"""Routes: ``path("jobs/", include("django_bourbon_jobs.api.urls"))``.

Names, in the ``bourbon_jobs_api`` namespace: ``job-list``, ``job-detail``,
``job-cancel``, ``job-retry``, ``job-events``, ``workflow-list``, ``workflow-detail``,
``workflow-cancel``, ``workflow-retry``, ``workflow-events`` (under ``workflows/``)
and ``schema`` (OpenAPI 3).
"""

from django.urls import path
from rest_framework.routers import SimpleRouter

from django_bourbon_jobs.api.openapi import SchemaView
from django_bourbon_jobs.api.views import JobViewSet
from django_bourbon_jobs.api.workflows import WorkflowViewSet

app_name = "bourbon_jobs_api"

router = SimpleRouter()
router.register("workflows", WorkflowViewSet, basename="workflow")  # first: a job id matches "workflows"
router.register("", JobViewSet, basename="job")

urlpatterns = [
    path("schema/", SchemaView.as_view(), name="schema"),
    *router.urls,
]
