"""The Server-Sent Events wire format, shared by the API's job stream and the admin dashboard's."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, cast

from django.db import connections
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
        pump = _Pump(cast(Iterable[bytes], self.streaming_content), getattr(self._events, "close", None))
        try:
            while (part := await pump.next()) is not _END:
                yield part
        finally:
            pump.stop()


_END: Any = object()


class _Pump:
    """Iterates a blocking iterator on its own daemon thread, handing each item to the event loop."""

    def __init__(self, parts: Iterable[bytes], close: Callable[[], object] | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._handoff: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
        self._stopping = threading.Event()
        name = "bourbon-event-stream"
        threading.Thread(target=self._run, args=(parts, close), name=name, daemon=True).start()

    async def next(self) -> Any:
        item = await self._handoff.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self) -> None:
        self._stopping.set()

    def _run(self, parts: Iterable[bytes], close: Callable[[], object] | None) -> None:
        try:
            for part in parts:
                if not self._hand_over(part):
                    return
            self._hand_over(_END)
        except Exception as exc:  # noqa: BLE001  (raised again on the event loop's side)
            self._hand_over(exc)
        finally:
            # Django's own close of the response may be closing the generator right now.
            with contextlib.suppress(ValueError):
                if close is not None:
                    close()
            connections.close_all()

    def _hand_over(self, item: Any) -> bool:
        """Wait until the loop takes ``item``; false once the response has stopped listening."""
        try:
            future = asyncio.run_coroutine_threadsafe(self._handoff.put(item), self._loop)
        except RuntimeError:  # the event loop is closed: the server is going away
            return False
        while not self._stopping.is_set():
            try:
                future.result(timeout=0.5)
                return True
            except concurrent.futures.TimeoutError:
                continue
        future.cancel()
        return False
