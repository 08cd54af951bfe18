"""Waiting for job events: Redis pub/sub when it is configured and answers, database polling otherwise.

A reader (the API's job stream, the admin dashboard's stream) subscribes *before*
its first read of the database, so no change between that read and the
subscription goes unheard; then it reads again each time :meth:`JobEvents.wait`
returns True. A message is only a wake-up: what the reader sends is what the
database holds (the system of record), so a lost, late or repeated message can
delay an update but never make one wrong.

**One Redis connection per process.** The readers of a process share one
subscription connection, owned by a :class:`Hub` and read by its one thread: a
thousand open streams are one Redis client, not a connection pool that runs dry
at a hundred. The hub subscribes to a channel while a reader wants it, drops it
when the last one leaves, and closes its connection after :data:`IDLE_SECONDS`
without readers.

**One poll per process without Redis.** Readers of single jobs share a
:class:`JobPoller`: one query every ``poll_interval`` reads the state of every
watched job and wakes the readers whose job changed, so three hundred waiting
streams cost two small queries a second, not six hundred connections.

While Redis is configured but unreachable, ``wait()`` returns True once per
``poll_interval``. The hub tries to connect again (0.1 s doubling to 5 s apart)
and, subscribed again, wakes every reader once: whatever was published while
nobody listened is lost. An outage is logged once per process, and so is its end.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from django.core.signals import setting_changed
from django.db import connections, router
from django.dispatch import receiver

from django_bourbon_jobs.events import redis_channels
from django_bourbon_jobs.models import Job

FIRST_RETRY = 0.1
MAX_RETRY = 5.0
CONFIRM_TIMEOUT = 2.0
"""Seconds a new reader waits for Redis to acknowledge its subscription; it polls if none came."""
DRAIN_LIMIT = 1000
"""Messages taken per wake-up; a burst beyond it wakes the readers once more."""
TICK = 0.05
"""Longest wait of a hub's thread for a message: how soon a new reader's SUBSCRIBE is sent."""
IDLE_SECONDS = 5.0
"""A hub without readers for this long closes its Redis connection."""

Key = tuple[str, str]
"""``("channel", name)`` or ``("pattern", glob)``."""


class Subscription:
    """One reader's channels and patterns, as its :class:`Hub` keeps them."""

    def __init__(self, keys: frozenset[Key]) -> None:
        self.keys = keys
        self.woken = threading.Event()
        """Set by a message on one of ``keys``, and when Redis is lost or back: read the database."""
        self.settled = threading.Event()
        """Set once Redis acknowledged every key, or the first attempt failed."""
        self.listening = False
        self.pending: set[Key] = set(keys)


class Hub:
    """This process's one pub/sub connection to the Redis of ``alias``, shared by every reader.

    Only the hub's thread touches the connection; readers register under the lock and
    wait on their own :class:`Subscription`'s events.
    """

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self._lock = threading.Lock()
        self._readers: dict[Key, set[Subscription]] = {}
        self._sent: set[Key] = set()
        """Asked of Redis on the current connection."""
        self._active: set[Key] = set()
        """Acknowledged by Redis on the current connection."""
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    def attach(self, keys: frozenset[Key]) -> Subscription:
        subscription = Subscription(keys)
        with self._lock:
            for key in keys:
                self._readers.setdefault(key, set()).add(subscription)
            subscription.pending = set(keys - self._active)
            if not subscription.pending:
                subscription.listening = True
                subscription.settled.set()
            if self._thread is None:
                name = f"bourbon-job-events-{self.alias}"
                self._thread = threading.Thread(target=self._run, name=name, daemon=True)
                self._thread.start()
        return subscription

    def detach(self, subscription: Subscription) -> None:
        with self._lock:
            for key in subscription.keys:
                readers = self._readers.get(key, set())
                readers.discard(subscription)
                if not readers:
                    self._readers.pop(key, None)

    def close(self) -> None:
        """Stop the thread and drop the connection (the settings changed)."""
        self._closing.set()

    def _run(self) -> None:
        delay, idle_since = FIRST_RETRY, time.monotonic()
        pubsub: Any = None
        while not self._closing.is_set():
            with self._lock:
                wanted = set(self._readers)
            if wanted:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > IDLE_SECONDS and self._retire():
                break
            try:
                if pubsub is None:
                    pubsub = redis_channels.connection(self.alias).pubsub()
                self._sync(pubsub, wanted)
                self._route(pubsub)
                delay = FIRST_RETRY
            except Exception as exc:  # noqa: BLE001  (any client error means: poll until Redis answers)
                _close_quietly(pubsub)
                pubsub = None
                self._lost(exc)
                self._closing.wait(delay)
                delay = min(delay * 2, MAX_RETRY)
        _close_quietly(pubsub)

    def _retire(self) -> bool:
        """Forget the thread unless a reader came meanwhile; True when it may end."""
        with self._lock:
            if self._readers:
                return False
            self._thread = None
            self._sent, self._active = set(), set()
            return True

    def _sync(self, pubsub: Any, wanted: set[Key]) -> None:
        """Subscribe to what readers want and Redis was not asked for; drop what nobody wants now."""
        with self._lock:
            added, removed = wanted - self._sent, self._sent - wanted
            self._active -= removed
        _send(pubsub.subscribe, added, "channel")
        _send(pubsub.psubscribe, added, "pattern")
        _send(pubsub.unsubscribe, removed, "channel")
        _send(pubsub.punsubscribe, removed, "pattern")
        with self._lock:
            self._sent = set(wanted)

    def _route(self, pubsub: Any) -> None:
        """Wait up to :data:`TICK`; take every message that arrived, then wake each reader once."""
        to_wake: set[Subscription] = set()
        message = pubsub.get_message(timeout=TICK)
        for _ in range(DRAIN_LIMIT):
            if message is None:
                break
            to_wake |= self._readers_of(message)
            message = pubsub.get_message(timeout=0.0)
        for subscription in to_wake:
            subscription.woken.set()

    def _readers_of(self, message: dict[str, Any]) -> set[Subscription]:
        kind = message["type"]
        if kind == "message":
            key = ("channel", _text(message["channel"]))
        elif kind == "pmessage":
            key = ("pattern", _text(message["pattern"]))
        else:
            if kind in ("subscribe", "psubscribe"):
                self._acknowledged(
                    ("channel" if kind == "subscribe" else "pattern", _text(message["channel"]))
                )
            return set()
        with self._lock:
            return set(self._readers.get(key, ()))

    def _acknowledged(self, key: Key) -> None:
        """Redis acknowledged ``key``: its readers hear from now on (and read once if they were polling)."""
        redis_channels.outages.back(self.alias, "subscribe")
        with self._lock:
            if key in self._sent:
                self._active.add(key)
            readers = list(self._readers.get(key, ()))
        for subscription in readers:
            subscription.pending.discard(key)
            if subscription.pending or subscription.listening:
                continue
            subscription.listening = True
            if subscription.settled.is_set():
                subscription.woken.set()
            subscription.settled.set()

    def _lost(self, exc: Exception) -> None:
        redis_channels.outages.lost(self.alias, exc, "subscribe")
        with self._lock:
            self._sent, self._active = set(), set()
            readers = {subscription for group in self._readers.values() for subscription in group}
        for subscription in readers:
            subscription.pending = set(subscription.keys)
            if subscription.listening:
                subscription.listening = False
                subscription.woken.set()
            subscription.settled.set()


def _send(command: Any, keys: set[Key], kind: str) -> None:
    names = sorted(name for key_kind, name in keys if key_kind == kind)
    if names:
        command(*names)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _close_quietly(pubsub: Any) -> None:
    if pubsub is None:
        return
    try:
        pubsub.close()
    except Exception:  # noqa: BLE001  (closing a dead connection may fail; nothing to do)
        pass


class _PerProcess[T]:
    """This process's instances, one per key, made by ``make(key)``; a forked child makes its own."""

    def __init__(self, make: Callable[[str], T]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._made: dict[str, T] = {}

    def get(self, key: str = "") -> T:
        with self._lock:
            if self._pid != os.getpid():
                self._pid, self._made = os.getpid(), {}
            if key not in self._made:
                self._made[key] = self._make(key)
            return self._made[key]

    def drop_all(self) -> list[T]:
        """Forget every instance (the next ``get`` makes a new one); the forgotten ones."""
        with self._lock:
            dropped, self._made = list(self._made.values()), {}
        return dropped


hubs: _PerProcess[Hub] = _PerProcess(Hub)
"""One :class:`Hub` per Redis alias."""


@receiver(setting_changed)
def _forget_hubs(*, setting: str, **kwargs: Any) -> None:
    if setting in ("CACHES", "TASKS", "BOURBON_JOBS"):
        for hub in hubs.drop_all():
            hub.close()


WATCHED_FIELDS = ("status", "attempts", "progress", "cancel_requested_at", "due_at", "started_at")
"""What a job stream shows changes only when one of these does (with the row gone, it ends)."""
POLL_CHUNK = 1000


class JobPoller:
    """Reads every watched job in one query per interval; wakes the watchers of jobs that changed.

    Its own thread borrows a connection for each read and closes it; it ends when
    nothing has been watched for :data:`IDLE_SECONDS`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watchers: dict[str, set[Subscription]] = {}
        self._intervals: dict[Subscription, float] = {}
        self._seen: dict[str, tuple[Any, ...] | None] = {}
        self._thread: threading.Thread | None = None
        self._napping = MAX_RETRY
        """How long the thread's current wait is (:data:`MAX_RETRY` while nobody watches)."""
        self._kick = threading.Event()
        """Ends that wait early: a watcher came that polls sooner than it."""

    def watch(self, job_id: object, interval: float) -> Subscription:
        key = str(job_id)
        subscription = Subscription(frozenset([("job", key)]))
        with self._lock:
            self._watchers.setdefault(key, set()).add(subscription)
            self._intervals[subscription] = interval
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="bourbon-job-poller", daemon=True)
                self._thread.start()
            elif interval < self._napping:
                self._kick.set()  # its first read would wait out the longer interval (MAX_RETRY when idle)
        return subscription

    def unwatch(self, subscription: Subscription) -> None:
        with self._lock:
            self._intervals.pop(subscription, None)
            for _, key in subscription.keys:
                watchers = self._watchers.get(key, set())
                watchers.discard(subscription)
                if not watchers:
                    self._watchers.pop(key, None)
                    self._seen.pop(key, None)

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            with self._lock:
                keys = list(self._watchers)
                interval = self._napping = min(self._intervals.values(), default=MAX_RETRY)
            if keys:
                idle_since = time.monotonic()
                self._wake(self._changed(keys))
            elif time.monotonic() - idle_since > IDLE_SECONDS and self._retire():
                return
            if self._kick.wait(interval):
                self._kick.clear()

    def _retire(self) -> bool:
        with self._lock:
            if self._watchers:
                return False
            self._thread = None
            return True

    def _changed(self, keys: list[str]) -> list[str]:
        using = router.db_for_read(Job)
        states: dict[str, tuple[Any, ...]] = {}
        try:
            for start in range(0, len(keys), POLL_CHUNK):
                rows = Job.objects.using(using).filter(pk__in=keys[start : start + POLL_CHUNK])
                states.update((str(row[0]), row[1:]) for row in rows.values_list("pk", *WATCHED_FIELDS))
        except Exception:  # noqa: BLE001  (the thread must go on; each reader reads, and meets the error)
            return keys
        finally:
            release_connection(using)
        with self._lock:
            # A job seen for the first time wakes its readers too: it may have changed since they read it.
            changed = [key for key in keys if key not in self._seen or self._seen[key] != states.get(key)]
            self._seen.update((key, states.get(key)) for key in keys if key in self._watchers)
        return changed

    def _wake(self, keys: list[str]) -> None:
        with self._lock:
            to_wake = [subscription for key in keys for subscription in self._watchers.get(key, ())]
        for subscription in to_wake:
            subscription.woken.set()


pollers: _PerProcess[JobPoller] = _PerProcess(lambda _: JobPoller())
"""The process's one :class:`JobPoller` (``pollers.get()``)."""


class JobEvents:
    """Subscribes to job channels (or patterns) on entering; :meth:`wait` says when to read again."""

    def __init__(
        self,
        alias: str | None,
        poll_interval: float,
        channels: Sequence[str] = (),
        patterns: Sequence[str] = (),
        job_id: object = None,
    ) -> None:
        self.alias = alias
        self.poll_interval = poll_interval
        self.keys: frozenset[Key] = frozenset(
            [("channel", name) for name in channels] + [("pattern", name) for name in patterns]
        )
        self.job_id = job_id
        self._hub: Hub | None = None
        self._subscription: Subscription | None = None
        self._watch: Subscription | None = None
        self._poller: JobPoller | None = None
        self._next_poll = 0.0

    @classmethod
    def for_job(cls, job_id: object, poll_interval: float) -> JobEvents:
        """One job's changes; without Redis, as the process's :class:`JobPoller` sees them."""
        alias = redis_channels.configured_alias()
        return cls(alias, poll_interval, channels=[redis_channels.job_channel(job_id)], job_id=job_id)

    @classmethod
    def for_all_jobs(cls, poll_interval: float) -> JobEvents:
        """Every job's changes, and new jobs: whatever moves the dashboard's numbers."""
        return cls(
            redis_channels.configured_alias(),
            poll_interval,
            channels=[redis_channels.enqueued_channel()],
            patterns=[redis_channels.job_channel("*")],
        )

    @property
    def listening(self) -> bool:
        """True while events come from Redis, False while the database is polled."""
        return self._subscription is not None and self._subscription.listening

    def __enter__(self) -> JobEvents:
        if self.alias is not None and self.keys:
            self._hub = hubs.get(self.alias)
            self._subscription = self._hub.attach(self.keys)
            self._subscription.settled.wait(CONFIRM_TIMEOUT)
        elif self.job_id is not None:
            self._poller = pollers.get()
            self._watch = self._poller.watch(self.job_id, self.poll_interval)
        self._next_poll = time.monotonic() + self.poll_interval
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._hub is not None and self._subscription is not None:
            self._hub.detach(self._subscription)
        if self._poller is not None and self._watch is not None:
            self._poller.unwatch(self._watch)
        self._subscription = self._watch = None

    def wait(self, timeout: float) -> bool:
        """Block at most ``timeout`` seconds; True means: read the database now."""
        subscription = self._subscription
        if subscription is not None and subscription.listening:
            return _woken(subscription, timeout)
        if self._watch is not None:
            return _woken(self._watch, timeout)
        now = time.monotonic()
        wake_at = min(self._next_poll, now + max(timeout, 0.0))
        if subscription is None:
            time.sleep(max(wake_at - now, 0.0))
        elif _woken(subscription, wake_at - now):
            return True  # subscribed again: what was published meanwhile is lost, so read
        if time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + self.poll_interval
            return True
        return False


def _woken(subscription: Subscription, timeout: float) -> bool:
    """Cleared before the reader reads, so a message that arrives meanwhile wakes it again."""
    if subscription.woken.wait(max(timeout, 0.0)):
        subscription.woken.clear()
        return True
    return False


def release_connection(using: str) -> None:
    """Close the connection after a read: a waiting reader holds a thread, but no database connection."""
    connection = connections[using]
    if not connection.in_atomic_block:
        connection.close()
