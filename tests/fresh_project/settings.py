"""What the docs tell a new project to write; nothing else (no REST_FRAMEWORK, no LOGGING)."""

import os
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"

SECRET_KEY = "fresh-project-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
ROOT_URLCONF = "tests.fresh_project.urls"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "rest_framework",
    "drf_spectacular",
    "django_bourbon_jobs",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_bourbon_jobs.middleware.AsyncDispatchMiddleware",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BOURBON_FRESH_DB", str(Path(__file__).resolve().parent / "db.sqlite3")),
    }
}
BOURBON_JOBS = {"API_TASKS": {"echo": "tests.tasks.echo"}}


def _docs_block(page: str, starts: str) -> str:
    """The Python block of ``docs/<page>`` that starts with ``starts``."""
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), re.S)
    [block] = [block for block in blocks if block.startswith(starts)]
    return block


exec(_docs_block("api.md", "CACHES = {"))  # defines CACHES and TASKS, as docs/api.md shows them
