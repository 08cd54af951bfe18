"""The Server-Sent Events wire format, shared by the API's job stream and the admin dashboard's."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from django.http import StreamingHttpResponse

RECONNECT_MS = 2000
"""The ``retry:`` a stream announces: how long a browser waits before reconnecting."""

RETRY = f"retry: {RECONNECT_MS}\n\n"
HEARTBEAT = ": heartbeat\n\n"


def format_event(event: str, data: str, event_id: str | None) -> str:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.extend(f"data: {line}" for line in data.splitlines() or [""])
    return "\n".join(lines) + "\n\n"


def event_id(data: str) -> str:
    """A digest of the state: equal ids mean the client already has this state."""
    return hashlib.sha256(data.encode()).hexdigest()[:20]


def stream_response(events: Iterator[str]) -> StreamingHttpResponse:
    """``text/event-stream``, neither cached nor buffered by a proxy (nginx's ``X-Accel-Buffering``)."""
    response = StreamingHttpResponse(events, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
