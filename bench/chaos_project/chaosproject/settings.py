"""Settings of the chaos project: the workers that ``bench/chaos.py`` starts, kills and pauses.

Environment (set by ``bench/chaos.py``):

- ``CHAOS_PG_PORT``: the port of the harness's own PostgreSQL cluster (required);
  ``CHAOS_DB``: the database name (``chaos``).
- ``CHAOS_REDIS_URL``: the harness's own redis-server; ``CHAOS_USE_REDIS=1`` names it in
  the backend's ``OPTIONS["REDIS"]`` (the Redis scenario).
- ``CHAOS_BOURBON_JOBS``: JSON merged over the short lease settings below.
- ``CHAOS_CONN_MAX_AGE``: Django's ``CONN_MAX_AGE`` (``0``).
- ``CHAOS_LOG_LEVEL``: level of the ``django_bourbon_jobs`` loggers (``WARNING``; the
  supervisor logs at ``INFO`` so that every start and exit of a worker is in the log).
"""

import json
import os

SECRET_KEY = "chaos-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "chaosproject.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_bourbon_jobs",
    "chaosapp",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("CHAOS_DB", "chaos"),
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": os.environ.get("CHAOS_PG_PORT", "5432"),
        "CONN_MAX_AGE": int(os.environ.get("CHAOS_CONN_MAX_AGE", "0")),
    }
}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
TASKS = {"default": {"BACKEND": "django_bourbon_jobs.backends.DatabaseBackend"}}
if os.environ.get("CHAOS_REDIS_URL"):
    CACHES["jobs"] = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ["CHAOS_REDIS_URL"],
        "OPTIONS": {"SOCKET_TIMEOUT": 2, "SOCKET_CONNECT_TIMEOUT": 2},
    }
    if os.environ.get("CHAOS_USE_REDIS") == "1":
        TASKS["default"]["OPTIONS"] = {"REDIS": "jobs"}

BOURBON_JOBS = {
    "LEASE_SECONDS": 4,
    "HEARTBEAT_SECONDS": 1,
    "RESCUE_INTERVAL": 1,
    "POLL_INTERVAL": 0.2,
    "BACKOFF_BASE": 0.2,
    "BACKOFF_MAX": 1,
    "SHUTDOWN_GRACE": 5,
    "TIMEOUT_GRACE": 1,
    "DEFAULT_TIMEOUT": 60,
    "DEFAULT_MAX_ATTEMPTS": 3,
    **json.loads(os.environ.get("CHAOS_BOURBON_JOBS", "{}")),
}

_LEVEL = os.environ.get("CHAOS_LOG_LEVEL", "WARNING")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "django_bourbon_jobs": {"level": _LEVEL},
        "django_bourbon_jobs.supervisor": {"level": "INFO"},
        "django.tasks": {"level": "WARNING"},  # one INFO line per job state otherwise
    },
}
