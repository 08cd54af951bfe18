"""``AsyncDispatchMiddleware``: gives views ``request.dispatch_async`` and friends.

``request.get_async_result(job_id)`` reads a job only for whoever may see it: the
user who dispatched it, a user with ``bourbon_jobs.view_job``, or a request that
carries the job's status token (``?token=``), which the ``status_url`` of an
anonymous dispatch includes. Any other id raises ``TaskResultDoesNotExist``,
exactly as a missing one does, so a guessed id reveals nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from django.core import signing
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, Task, TaskResult
from django.tasks.exceptions import TaskResultDoesNotExist
from django.utils.crypto import constant_time_compare
from django.utils.http import urlencode

from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.dispatch import dispatch_async, get_result
from django_bourbon_jobs.models import Job
from django_bourbon_jobs.permissions import can_view_all
from django_bourbon_jobs.status_urls import api_status_path, reverse_job_url

TOKEN_SALT = "django_bourbon_jobs.status"


def status_token(job_id: str) -> str:
    """The job's status token: whoever holds it may read the job through ``get_async_result``."""
    return signing.Signer(salt=TOKEN_SALT).signature(str(job_id))


def status_url(request: HttpRequest, job_id: str) -> str | None:
    """Absolute URL where the caller can read the job, or ``None`` when there is none.

    ``STATUS_URL_NAME``'s view, with the job's status token for an anonymous request (the only
    way back to the job); unset, the API's status route when the project mounts the API. The API
    answers signed-in users only, so an anonymous request gets no URL from it.
    """
    name = get_settings().STATUS_URL_NAME
    anonymous = not getattr(getattr(request, "user", None), "is_authenticated", False)
    if name:
        url = reverse_job_url(name, job_id)
        if anonymous:
            url += "?" + urlencode({"token": status_token(job_id)})
        return request.build_absolute_uri(url)
    path = None if anonymous else api_status_path(job_id)
    return request.build_absolute_uri(path) if path else None


def may_read(request: HttpRequest, job_id: str) -> bool:
    """The dispatcher, a user with ``view_job``, or a request carrying the job's status token."""
    token = request.GET.get("token", "")
    if token and constant_time_compare(token, status_token(job_id)):
        return True
    user = getattr(request, "user", None)
    if not getattr(user, "is_authenticated", False):
        return False
    if can_view_all(user):
        return True
    return Job.objects.filter(pk=job_id, dispatched_by=user).exists()


def get_result_for(
    request: HttpRequest, job_id: str, backend: str = DEFAULT_TASK_BACKEND_ALIAS
) -> TaskResult:
    """``get_result``, for a job this request may read (:func:`may_read`); any other is "does not exist"."""
    result = get_result(job_id, backend)
    if not may_read(request, result.id):
        raise TaskResultDoesNotExist(job_id)
    return result


def dispatch_for(request: HttpRequest, handler: Task, payload: Any = None, **options: Any) -> TaskResult:
    """``dispatch_async`` that records the request's user as the dispatcher."""
    options.setdefault("dispatched_by", getattr(request, "user", None))
    return dispatch_async(handler, payload, **options)


def dispatch_async_json(
    request: HttpRequest, handler: Task, payload: Any = None, **options: Any
) -> JsonResponse:
    """Dispatch and answer ``202 Accepted`` with the job id, its status URL and a ``Location`` header."""
    result = dispatch_for(request, handler, payload, **options)
    url = status_url(request, result.id)
    response = JsonResponse({"status": "queued", "job_id": result.id, "status_url": url}, status=202)
    if url:
        response["Location"] = url
    return response


class AsyncDispatchMiddleware:
    """Adds ``dispatch_async``, ``dispatch_async_json`` and ``get_async_result`` to each request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.dispatch_async = partial(dispatch_for, request)  # type: ignore[attr-defined]
        request.dispatch_async_json = partial(dispatch_async_json, request)  # type: ignore[attr-defined]
        request.get_async_result = partial(get_result_for, request)  # type: ignore[attr-defined]
        return self.get_response(request)
