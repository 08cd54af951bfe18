"""The test settings plus Redis as the fast path (``BOURBON_TEST_REDIS_URL`` names the server)."""

import os

from tests.settings import *  # noqa: F403

REDIS_URL = os.environ.get("BOURBON_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "jobs": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 2},
    },
}
TASKS = {"default": {"BACKEND": "django_bourbon_jobs.backends.DatabaseBackend", "OPTIONS": {"REDIS": "jobs"}}}
