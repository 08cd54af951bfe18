"""A project with views of its own and no jobs API (for ``override_settings(ROOT_URLCONF=...)``)."""

from django.urls import path

from tests import views

urlpatterns = [
    path("process/", views.process, name="process"),
    path("jobs/<str:job_id>/", views.job_status, name="job-status"),
]
