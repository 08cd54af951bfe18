"""What the schema says about answers that are not the happy path: errors and the event stream.

Every status the API can answer is documented, so a client generated from the schema
(and schemathesis, in ``tests/security/``) meets no undocumented answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from drf_spectacular.utils import extend_schema as spectacular_extend_schema
from drf_spectacular.views import SCHEMA_KWARGS, SpectacularAPIView
from rest_framework.request import Request
from rest_framework.response import Response

ERROR_BODY: dict[str, Any] = {
    "type": "object",
    "description": '`{"detail": "..."}`, or for invalid input one list of messages per field.',
    "additionalProperties": True,
}

SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "description": (
        "One Server-Sent Event. `status` and `progress` carry the job (as `GET /jobs/{id}/` shows it) "
        "as JSON in `data`, with the state's digest as `id`; `gone` says the job was deleted; `error` "
        "carries an error body. The first block sets `retry` (milliseconds), and `: heartbeat` "
        "comments keep an idle stream open."
    ),
    "properties": {
        "event": {"type": "string", "enum": ["status", "progress", "gone", "error"]},
        "id": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "retry": {"type": "integer"},
    },
}


class JobSchema(AutoSchema):
    """drf-spectacular's schema for the jobs views, whatever ``DEFAULT_SCHEMA_CLASS`` names."""

    def get_tags(self) -> list[str]:
        return ["jobs"]


class WorkflowSchema(AutoSchema):
    """The same for the workflow views."""

    def get_tags(self) -> list[str]:
        return ["workflows"]


def extend_schema(base: type[AutoSchema] = JobSchema, **kwargs: Any) -> Callable[[Any], Any]:
    """drf-spectacular's ``extend_schema`` for a view method, built on ``base`` (the view's schema class).

    drf-spectacular builds a method's schema on ``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]`` when
    the decorator runs, and DRF's default there cannot take drf-spectacular's calls: in a
    project that does not name drf-spectacular's class, the schema view answered 500.
    """
    decorate = spectacular_extend_schema(**kwargs)

    def decorator(view_method: Any) -> Any:
        view_method.kwargs = {**getattr(view_method, "kwargs", {}), "schema": base}
        return decorate(view_method)

    return decorator


# drf-spectacular's schema view, itself described by drf-spectacular whatever DEFAULT_SCHEMA_CLASS says.
class SchemaView(SpectacularAPIView):
    __doc__ = SpectacularAPIView.__doc__  # type: ignore[assignment]  # this endpoint's description
    schema = AutoSchema()

    @extend_schema(base=AutoSchema, **SCHEMA_KWARGS)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


def error(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ERROR_BODY, description=description)


NOT_FOUND = error("No such job, or one the caller may not see (the two answer alike)")
NOT_AUTHENTICATED = error("Not authenticated (or, with a session, a missing CSRF token)")
THROTTLED = error("Throttled; `Retry-After` says when to try again")
BAD_BODY = error("The body is not JSON, or nests deeper than `API_MAX_PAYLOAD_DEPTH`")
NOT_ALLOWED = error("Someone else's job, without the permission to act on it")

COMMON = {401: NOT_AUTHENTICATED, 403: NOT_AUTHENTICATED, 429: THROTTLED}
ON_A_JOB = {**COMMON, 404: NOT_FOUND}
ACTING_ON_A_JOB = {**ON_A_JOB, 400: BAD_BODY, 403: NOT_ALLOWED, 415: error("The body is not JSON")}
EVENTS: dict[int | tuple[int, str], OpenApiResponse] = {
    (200, "text/event-stream"): OpenApiResponse(response=SSE_EVENT, description="The event stream"),
    204: OpenApiResponse(description="Finished, and the client has the final state"),
    **{(code, "application/json"): response for code, response in ON_A_JOB.items()},
    **{
        (code, "text/event-stream"): OpenApiResponse(response=SSE_EVENT, description=response.description)
        for code, response in ON_A_JOB.items()
    },
}
