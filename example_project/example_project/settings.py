"""Settings of the example project: one SQLite file, the jobs backend, the middleware.

Not for production (a fixed SECRET_KEY, DEBUG on): it exists to show the
django_bourbon_jobs setup and to run ``manage.py demo``.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "example-project-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django_bourbon_jobs",
    "shop",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Gives every request dispatch_async(), dispatch_async_json() and get_async_result().
    "django_bourbon_jobs.middleware.AsyncDispatchMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # BOURBON_EXAMPLE_DB lets a test or a second checkout use another file.
        "NAME": os.environ.get("BOURBON_EXAMPLE_DB", str(BASE_DIR / "db.sqlite3")),
        "OPTIONS": {
            # Wait for the write lock instead of failing at once with "database is locked".
            "timeout": 30,
            # Take the write lock when a transaction begins, so two writers never
            # deadlock upgrading read locks.
            "transaction_mode": "IMMEDIATE",
            # Readers (the status view) do not block the writer (the workers).
            "init_command": "PRAGMA journal_mode=WAL;",
        },
    }
}

# Django's Tasks framework: every @task in this project is stored in the database.
TASKS = {"default": {"BACKEND": "django_bourbon_jobs.backends.DatabaseBackend"}}

BOURBON_JOBS = {
    # dispatch_async_json() replies carry the URL of this view, reversed with job_id=...
    "STATUS_URL_NAME": "job-status",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        # One line per job state change; INFO shows every one, WARNING only retries,
        # rescues and failures.
        "django_bourbon_jobs": {
            "handlers": ["console"],
            "level": os.environ.get("BOURBON_LOG_LEVEL", "WARNING"),
            "propagate": False,
        },
    },
}
