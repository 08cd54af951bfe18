from django.contrib import admin
from django.urls import include, path

from tests import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("signup/", views.signup, name="signup"),
    path("process/", views.process, name="process"),
    path("jobs/<str:job_id>/", views.job_status, name="job-status"),
]

# The HTTP API (docs/api.md); under api/ so that jobs/<job_id>/ above keeps its meaning.
urlpatterns += [path("api/jobs/", include("django_bourbon_jobs.api.urls"))]
