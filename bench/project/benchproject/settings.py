"""One settings module for every system; ``BENCH_SYSTEM`` selects the queue app and backend.

Environment: BENCH_SYSTEM (ours|ours_redis|tasks_db|ox|djqueue|vtasks|celery|rq|dramatiq),
BENCH_DB (database name), BENCH_CONN_MAX_AGE (seconds; "none" for unlimited),
BENCH_PROCESSES (dj_queue only: its worker processes come from settings, not from the
command line), BENCH_REDIS_URL (redis://127.0.0.1:6379/<db>, one db number per system).
"""

import os

SYSTEM = os.environ.get("BENCH_SYSTEM", "ours")
PROCESSES = int(os.environ.get("BENCH_PROCESSES", "2"))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/1")
_cma = os.environ.get("BENCH_CONN_MAX_AGE", "600")

SECRET_KEY = "bench-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "benchproject.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("BENCH_DB", f"bench_{SYSTEM}"),
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "CONN_MAX_AGE": None if _cma.lower() == "none" else int(_cma),
    }
}

INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "benchapp"]

if SYSTEM in ("ours", "ours_redis"):
    INSTALLED_APPS.append("django_bourbon_jobs")
    TASKS = {"default": {"BACKEND": "django_bourbon_jobs.backends.DatabaseBackend"}}
    if SYSTEM == "ours_redis":
        CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "jobs": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL},
        }
        TASKS["default"]["OPTIONS"] = {"REDIS": "jobs"}
elif SYSTEM == "tasks_db":
    INSTALLED_APPS.append("django_tasks_db")
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
elif SYSTEM == "ox":
    INSTALLED_APPS.append("django_ox")
    TASKS = {"default": {"BACKEND": "django_ox.backend.OxBackend"}}
elif SYSTEM == "djqueue":
    INSTALLED_APPS.append("dj_queue")
    DATABASE_ROUTERS = ["dj_queue.routers.DjQueueRouter"]
    TASKS = {
        "default": {
            "BACKEND": "dj_queue.backend.DjQueueBackend",
            "QUEUES": [],
            "OPTIONS": {
                # Package defaults except threads (3 -> 1) and processes (1 -> N), so that
                # every system runs N processes with one job at a time in each.
                "workers": [
                    {
                        "queues": "*",
                        "threads": int(os.environ.get("BENCH_DJQUEUE_THREADS", "1")),
                        "processes": PROCESSES,
                        "polling_interval": 0.1,
                    }
                ],
            },
        }
    }
elif SYSTEM == "vtasks":
    # Valkey/Redis backend: the queue lives in Redis, the worker keeps no results.
    INSTALLED_APPS.append("django_vtasks")
    TASKS = {
        "default": {
            "BACKEND": "django_vtasks.backends.valkey.ValkeyTaskBackend",
            "OPTIONS": {"BROKER_URL": REDIS_URL},
        }
    }
    VTASKS_RUN_SCHEDULER = False
elif SYSTEM == "celery":
    # Celery with a Redis broker; results stored in PostgreSQL by django-celery-results.
    INSTALLED_APPS.append("django_celery_results")
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = "django-db"
    CELERY_WORKER_HIJACK_ROOT_LOGGER = False
elif SYSTEM in ("rq", "dramatiq"):
    # Plain RQ / Dramatiq (no Django integration needed by the workers); the database
    # is used by the benchmark only (the pickup-latency stamps).
    pass
else:
    raise RuntimeError(f"unknown BENCH_SYSTEM {SYSTEM!r}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
