"""Test settings: SQLite by default; ``BOURBON_TEST_DB=postgres`` selects PostgreSQL.

Both test databases are real files/servers, so worker subprocesses started by
the tests see the same rows (``BOURBON_TEST_DB_NAME`` points them at the test database).
"""

import json
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = os.environ.get("BOURBON_TEST_ALLOWED_HOSTS", "*").split(",")
ROOT_URLCONF = "tests.urls"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_bourbon_jobs",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_bourbon_jobs.middleware.AsyncDispatchMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "/static/"
# Django's default hasher costs about a second per password here (each admin_user, create_user(password=...),
# login and Basic-auth request); no test is about password hashing, and workers never hash.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

DB_KIND = os.environ.get("BOURBON_TEST_DB", "sqlite")
SQLITE_PATH = os.environ.get("BOURBON_TEST_SQLITE", str(BASE_DIR.parent / ".test-db.sqlite3"))
if DB_KIND == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("BOURBON_TEST_DB_NAME", "bourbon_jobs"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "TEST": {"NAME": os.environ.get("BOURBON_TEST_PG_NAME", "test_bourbon_jobs")},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("BOURBON_TEST_DB_NAME", SQLITE_PATH),
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            "TEST": {"NAME": SQLITE_PATH + ".test"},
        }
    }

TASKS = {"default": {"BACKEND": "django_bourbon_jobs.backends.DatabaseBackend"}}
BOURBON_JOBS = {
    "POLL_INTERVAL": 0.05,
    "BACKOFF_BASE": 0.01,
    "BACKOFF_MAX": 0.05,
    "STATUS_URL_NAME": "job-status",
    # Subprocess tests shorten leases and grace periods through this variable.
    **json.loads(os.environ.get("BOURBON_TEST_SETTINGS", "{}")),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}, "console": {"class": "logging.StreamHandler"}},
    # Subprocess tests that read the workers' log set BOURBON_TEST_LOG=1.
    "root": {"handlers": ["console" if os.environ.get("BOURBON_TEST_LOG") else "null"], "level": "WARNING"},
}

# The HTTP API (docs/api.md) and webhooks (docs/webhooks.md).
INSTALLED_APPS += ["rest_framework", "drf_spectacular"]
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Unthrottled here; tests/test_api.py checks the default rate and a configured one.
    "DEFAULT_THROTTLE_RATES": {"bourbon_jobs.dispatch": None},
}
BOURBON_JOBS = {
    "API_TASKS": {
        "echo": "tests.tasks.echo",
        "always_fails": "tests.tasks.always_fails",
        "progress_steps": "tests.tasks.progress_steps",
        "stops_when_asked": "tests.tasks.stops_when_asked",
    },
    "WEBHOOK_SECRET": "tests-webhook-secret",
    "WEBHOOK_ALLOWED_HOSTS": ["127.0.0.1", "localhost", ".example.com"],
    # The tests' receivers listen on loopback, which webhooks refuse unless it is listed.
    "WEBHOOK_ALLOWED_NETWORKS": ["127.0.0.0/8", "::1/128"],
    "WEBHOOK_TIMEOUT": 5.0,
    **BOURBON_JOBS,
}
