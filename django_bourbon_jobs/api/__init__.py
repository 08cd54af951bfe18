"""The HTTP API (Django REST framework): dispatch, status, list, cancel, retry, live events.

Include it with ``path("jobs/", include("django_bourbon_jobs.api.urls"))``;
install the ``api`` extra (djangorestframework, drf-spectacular). See docs/api.md.
"""
