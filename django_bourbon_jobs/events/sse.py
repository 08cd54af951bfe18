"""Server-Sent Events, shared by the API's job stream and the admin dashboard's: the wire format,
the response that sends each event as it is produced, and the caps on open streams.

An open stream holds a thread for up to minutes, and must not hold a database
connection meanwhile: :func:`open_stream` takes a slot (per user and per process,
``STREAMS_PER_USER`` and ``STREAMS_PER_PROCESS``; beyond them :class:`TooManyStreams`)
and closes the connections the request used before the stream starts; the
stream's own reads each borrow a connection and give it back.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, cast

from django.db import connections
from django.http import StreamingHttpResponse

from django_bourbon_jobs.events.stream import END, OPENING, Event, EventStream, Pump
from django_bourbon_jobs.events.stream import HEARTBEAT as STREAM_HEARTBEAT
from django_bourbon_jobs.events.subscribe import release_connection

RECONNECT_MS = 2000
"""The ``retry:`` a stream announces: how long a browser waits before reconnecting."""

RETRY = f"retry: {RECONNECT_MS}\n\n"
HEARTBEAT = ": heartbeat\n\n"
FULL_RETRY_AFTER = 10
"""The ``Retry-After`` seconds of a stream refused because too many are open."""


class TooManyStreams(Exception):
    """Refused: the user, or this process, holds as many open streams as allowed."""

    retry_after = FULL_RETRY_AFTER


class StreamSlots:
    """The open streams of this process, counted in all and per user."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._per_user: Counter[object] = Counter()
        self.open = 0

    def take(self, user: object, per_user: int, per_process: int) -> Callable[[], None]:
        """A slot for ``user``, or :class:`TooManyStreams`; calling what it returns gives it back."""
        with self._lock:
            if self._per_user[user] >= per_user:
                raise TooManyStreams(f"You have {per_user} event streams open already; close one first.")
            if self.open >= per_process:
                raise TooManyStreams(
                    "This server has as many event streams open as it allows; try again later."
                )
            self._per_user[user] += 1
            self.open += 1
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if released.is_set():
                    return
                released.set()
                self.open -= 1
                self._per_user[user] -= 1
                if self._per_user[user] <= 0:
                    del self._per_user[user]

        return release


slots = StreamSlots()


def open_stream(user: object, stream: EventStream, per_user: int, per_process: int) -> StreamingHttpResponse:
    """The response for ``stream`` (as Server-Sent Events), holding one of ``user``'s slots until it closes.

    The request's database connections (the job's lookup, the session) are closed
    first: under ASGI they would otherwise stay open on the request's thread until
    the stream ends.
    """
    release = slots.take(user, per_user, per_process)
    release_request_connections()
    return stream_response(_Held(as_sse(stream), release))


def release_request_connections() -> None:
    for connection in connections.all(initialized_only=True):
        release_connection(connection.alias)


class _Held:
    """``events``, and the slot it gives back when closed (by the server, or Django's ``close()``)."""

    def __init__(self, events: Iterator[str], release: Callable[[], None]) -> None:
        self._events = events
        self._release = release

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._events)

    def close(self) -> None:
        try:
            close = getattr(self._events, "close", None)
            # Under ASGI the stream's own thread and Django's close() may both get here.
            with contextlib.suppress(ValueError):
                if close is not None:
                    close()
        finally:
            self._release()


def as_sse(events: Iterable[Event]) -> Iterator[str]:
    """The stream's events as Server-Sent Events text; closing this closes the stream (its subscription)."""
    iterator = iter(events)
    try:
        for event in iterator:
            if event is OPENING:
                yield RETRY
            elif event is STREAM_HEARTBEAT:
                yield HEARTBEAT
            else:
                yield format_event(event.name, event.data, event.id)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


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
    response = EventStreamResponse(events, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


class EventStreamResponse(StreamingHttpResponse):
    """A stream of events that is sent as it is produced under ASGI too.

    Under WSGI Django iterates the (blocking) event iterator as usual. Under ASGI,
    Django reads a synchronous iterator to its very end before it sends a byte,
    which would hold every event of a stream back until the job finished. Here the
    iterator runs on a thread of its own instead (as it would under a threaded WSGI
    server), and each event is sent as soon as it is produced. That thread closes
    the iterator when the stream ends or the client goes away, so the stream's
    cleanup (its Redis subscription, its database connection) runs where it ran.
    """

    def __init__(self, events: Iterator[str], **kwargs: Any) -> None:
        super().__init__(events, **kwargs)
        self._events = events

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pump = Pump(cast(Iterable[bytes], self.streaming_content), getattr(self._events, "close", None))
        try:
            while (part := await pump.next()) is not END:
                yield part
        finally:
            pump.stop()
