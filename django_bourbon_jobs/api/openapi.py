"""What the schema says about answers that are not the happy path: errors and the event stream.

Every status the API can answer is documented, so a client generated from the schema
(and schemathesis, in ``tests/security/``) meets no undocumented answer.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse

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
