from django.contrib import admin
from django.urls import path

from tests import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("signup/", views.signup, name="signup"),
    path("process/", views.process, name="process"),
    path("jobs/<str:job_id>/", views.job_status, name="job-status"),
]
