"""One set of factories for the tests: jobs as rows, users with job permissions, dispatches over the API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import Permission, User
from django.utils import timezone
from rest_framework.test import APIClient

from django_bourbon_jobs.models import Job, JobStatus

API = "/api/jobs/"
"""Where tests/urls.py mounts the jobs API."""

TRACEBACK = 'Traceback (most recent call last):\n  File "shop/tasks.py", line 9\n{exception}: {message}\n'


def make_job(user: User | None = None, **fields: Any) -> Job:
    """A job row as a dispatch of ``tests.tasks.echo(None)`` leaves it, by ``user``; ``fields`` override."""
    now = timezone.now()
    defaults = {"task_path": "tests.tasks.echo", "run_after": now, "enqueued_at": now, "args": [None]}
    return Job.objects.create(**{**defaults, "dispatched_by": user, **fields})


def job_error(exception: str = "builtins.ValueError", message: str = "bad input", attempt: int = 1) -> dict:
    """One entry of ``Job.errors``, as a worker records a failed attempt."""
    return {
        "exception_class_path": exception,
        "message": message,
        "traceback": TRACEBACK.format(exception=exception, message=message),
        "worker_id": "host-1-abc",
        "attempt": attempt,
        "at": timezone.now().isoformat(),
    }


def failed_job(exception: str = "builtins.ValueError", message: str = "bad input", **fields: Any) -> Job:
    """A job that failed its two attempts, the last with ``exception: message``."""
    now = timezone.now()
    values = {
        "status": JobStatus.FAILED,
        "attempts": 2,
        "max_attempts": 2,
        "started_at": now - timedelta(seconds=3),
        "last_attempted_at": now - timedelta(seconds=1),
        "finished_at": now,
        "worker_id": "host-1-abc",
        "errors": [job_error("builtins.OSError", "first try", 1), job_error(exception, message, 2)],
        **fields,
    }
    return make_job(**values)


def make_user(username: str = "alice", *codenames: str, **fields: Any) -> User:
    """A user holding the ``bourbon_jobs`` permissions named (``"view_job"``, ``"retry_job"``...)."""
    user = User.objects.create_user(username, **fields)
    if codenames:
        permissions = Permission.objects.filter(
            content_type__app_label="bourbon_jobs", codename__in=codenames
        )
        user.user_permissions.add(*permissions)
        user = User.objects.get(pk=user.pk)  # a fresh permission cache
    return user


def api_client(user: User | None) -> APIClient:
    """A DRF test client, authenticated as ``user`` (anonymous for ``None``)."""
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def dispatch_over_api(client: APIClient, **body: Any) -> Any:
    """``POST /api/jobs/``: ``echo`` with ``{"n": 1}`` unless ``body`` says otherwise."""
    return client.post(API, {"task": "echo", "payload": {"n": 1}, **body}, format="json")


def dispatched_id(user: User, **body: Any) -> str:
    """Dispatch over the API as ``user``, check the ``202``, and return the job's id."""
    response = dispatch_over_api(api_client(user), **body)
    assert response.status_code == 202, response.content
    return str(response.json()["job_id"])
