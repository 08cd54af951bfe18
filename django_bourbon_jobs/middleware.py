"""``AsyncDispatchMiddleware``: gives views ``request.dispatch_async`` and friends."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.tasks import Task, TaskResult
from django.urls import reverse

from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.dispatch import dispatch_async, get_result


def status_url(request: HttpRequest, job_id: str) -> str | None:
    """Absolute URL of the project's job status view, when ``STATUS_URL_NAME`` names one."""
    name = get_settings().STATUS_URL_NAME
    if not name:
        return None
    return request.build_absolute_uri(reverse(name, kwargs={"job_id": job_id}))


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
        request.get_async_result = get_result  # type: ignore[attr-defined]
        return self.get_response(request)
