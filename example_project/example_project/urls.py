from django.urls import path
from shop import views

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("videos/", views.process_video, name="process-video"),
    # BOURBON_JOBS["STATUS_URL_NAME"] names this URL; it must take a job_id.
    path("jobs/<str:job_id>/", views.job_status, name="job-status"),
]
