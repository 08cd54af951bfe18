"""The loop every live stream shares: wait for a wake-up, read the database, send what changed.

A stream subscribes (:meth:`EventStream.subscribe`) before its first read, so no
change between the two goes unheard; then it reads whenever a wake-up or a
heartbeat makes a read due, sends what changed, sends a heartbeat comment when it
has been quiet for ``heartbeat_interval``, and ends when the subclass says it is
done or after ``max_seconds`` (the client reconnects and misses nothing). The
API's job stream and the admin dashboard's stream are subclasses; they say only
what to subscribe to, what to read, and what to send.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connections

from django_bourbon_jobs.events.subscribe import JobEvents


@dataclass(frozen=True, slots=True)
class Event:
    """One thing a stream sends: ``name`` (``status``, ``progress``, ``gone``, ``changed``, ...),
    its ``data`` as JSON text, and an ``id`` a reconnecting client can send back.

    Two names are the transport's own: ``retry`` opens a stream, ``heartbeat`` keeps an idle one
    open. :mod:`.sse` and the WebSocket consumer each render events their way.
    """

    name: str
    data: str = ""
    id: str | None = None

    def as_json(self) -> str:
        """``{"event", "id", "data"}``, the data embedded as JSON (a WebSocket text message)."""
        data = self.data or "null"
        return f'{{"event": {json.dumps(self.name)}, "id": {json.dumps(self.id)}, "data": {data}}}'


OPENING = Event("retry")
HEARTBEAT = Event("heartbeat")


class EventStream:
    """Yields :class:`Event` s. Subclasses define :meth:`subscribe` and :meth:`updates`."""

    heartbeat_interval: float = 15.0
    max_seconds: float = 300.0
    min_gap: float = 0.0
    """Least seconds between two reads; a read due sooner waits (see :meth:`next_read_at`)."""

    def __init__(self) -> None:
        self.due = True
        """A read is due: the first one, and after each wake-up or heartbeat."""
        self.done = False
        """Set by :meth:`updates` when the stream has sent its last event."""
        self.last_read = -math.inf

    def take_read(self) -> bool:
        """True, and the read no longer due, when a read is due and ``min_gap`` has passed."""
        if not self.due or time.monotonic() - self.last_read < self.min_gap:
            return False
        self.due, self.last_read = False, time.monotonic()
        return True

    def subscribe(self) -> JobEvents:
        raise NotImplementedError

    def updates(self) -> Iterator[Event]:
        """Read if :meth:`take_read` says so, and yield the events that changed."""
        raise NotImplementedError

    def next_read_at(self) -> float | None:
        """A monotonic time at which a held-back read becomes possible; None when nothing is held."""
        return self.last_read + self.min_gap if self.due and self.min_gap else None

    def __iter__(self) -> Iterator[Event]:
        yield OPENING
        started = last_write = time.monotonic()
        with self.subscribe() as events:
            while True:
                for event in self.updates():
                    yield event
                    last_write = time.monotonic()
                if self.done or time.monotonic() - started >= self.max_seconds:
                    return
                if events.wait(self._seconds_to_wait(started, last_write)):
                    self.due = True
                if time.monotonic() - last_write >= self.heartbeat_interval:
                    yield HEARTBEAT
                    self.due, last_write = True, time.monotonic()

    def _seconds_to_wait(self, started: float, last_write: float) -> float:
        """Until the next heartbeat, the end, or a held-back read, whichever comes first.

        Waiting (rather than sleeping) through a held-back read keeps taking Redis
        messages off the socket, so a busy system never backs up a subscription.
        """
        until = min(last_write + self.heartbeat_interval, started + self.max_seconds)
        held = self.next_read_at()
        if held is not None:
            until = min(until, held)
        return until - time.monotonic()


END: Any = object()
"""What :meth:`Pump.next` returns once the iterator is exhausted."""


class Pump:
    """Iterates a blocking iterator on its own daemon thread, handing each item to the event loop."""

    def __init__(self, parts: Iterable[Any], close: Callable[[], object] | None) -> None:
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

    def _run(self, parts: Iterable[Any], close: Callable[[], object] | None) -> None:
        try:
            for part in parts:
                if not self._hand_over(part):
                    return
            self._hand_over(END)
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
