"""Flow control declared on tasks and queues: concurrency and rate limits, circuit breakers.

Pure values and rules, no database: what ``@task(concurrency=..., rate_limit=...,
circuit_breaker=...)`` and ``BOURBON_JOBS["QUEUE_LIMITS"]`` mean, checked once, and
the arithmetic both stores agree on (how many attempts a limit lets start now,
the window of recent starts). The database enforces them: see
:mod:`django_bourbon_jobs.store` and ``docs/flow-control.md``.

A limited job carries one *limit key* (``Job.limit_key``): ``task:<path>`` when its
task declares any limit, else ``queue:<name>`` when its queue does, else ``""``. A
job of a limited task in a limited queue is held to both: the queue's key is
always ``queue:<its queue>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([smh])\s*$")
UNLIMITED = 2**31 - 1
"""What "no limit" counts as where a number is needed (the claim's arithmetic)."""
TASK_PREFIX = "task:"
QUEUE_PREFIX = "queue:"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LimitError(ValueError):
    """A limit, rate or circuit breaker option is malformed; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Rate:
    """At most :attr:`count` starts in any window of :attr:`window` seconds."""

    count: int
    window: float


@dataclass(frozen=True, slots=True)
class Breaker:
    """Open after :attr:`threshold` consecutive failed attempts; try again after :attr:`cooldown` seconds."""

    threshold: int
    cooldown: float


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """The limits one key declares; a field left ``None`` does not limit."""

    key: str
    concurrency: int | None = None
    rate: Rate | None = None
    breaker: Breaker | None = None

    def row_values(self) -> dict[str, Any]:
        """The ``Limit`` columns this spec sets (the rest are the row's running state)."""
        return {
            "concurrency": self.concurrency,
            "rate_limit": self.rate.count if self.rate else None,
            "rate_window": self.rate.window if self.rate else None,
            "breaker_threshold": self.breaker.threshold if self.breaker else None,
            "breaker_cooldown": self.breaker.cooldown if self.breaker else None,
        }


def task_key(task_path: str) -> str:
    return TASK_PREFIX + task_path


def queue_key(queue_name: str) -> str:
    return QUEUE_PREFIX + queue_name


def limit_key_for(task: LimitSpec | None, queue: LimitSpec | None) -> str:
    """The key a job carries: its task's if the task declares limits, else its queue's, else ``""``."""
    if task is not None:
        return task.key
    return queue.key if queue is not None else ""


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_concurrency(value: object) -> int:
    if not (_is_whole(value) and value >= 1):  # type: ignore[operator]
        raise LimitError(f"concurrency must be a whole number of at least 1 (got {value!r}).")
    return value  # type: ignore[return-value]


def parse_rate(value: object) -> Rate:
    """``"100/m"`` -> ``Rate(100, 60.0)``; units ``s``, ``m``, ``h``."""
    match = _RATE.match(value) if isinstance(value, str) else None
    if match is None or int(match[1]) < 1:
        raise LimitError(
            f"rate_limit must look like '100/m': a whole number of at least 1 per s, m or h (got {value!r})."
        )
    return Rate(int(match[1]), RATE_UNITS[match[2]])


def parse_breaker(value: object) -> Breaker:
    """``{"threshold": 5, "cooldown": 30}``: both required; threshold >= 1, cooldown > 0 seconds."""
    if not isinstance(value, Mapping) or set(value) != {"threshold", "cooldown"}:
        raise LimitError(
            "circuit_breaker must be a dict with exactly the keys 'threshold' and 'cooldown' "
            f"(got {value!r})."
        )
    threshold, cooldown = value["threshold"], value["cooldown"]
    if not (_is_whole(threshold) and threshold >= 1):
        raise LimitError(
            f"circuit_breaker['threshold'] must be a whole number of at least 1 (got {threshold!r})."
        )
    if not (isinstance(cooldown, int | float) and not isinstance(cooldown, bool) and cooldown > 0):
        raise LimitError(
            f"circuit_breaker['cooldown'] must be a number of seconds above 0 (got {cooldown!r})."
        )
    return Breaker(threshold, float(cooldown))


def task_spec(task_path: str, concurrency: Any, rate_limit: Any, circuit_breaker: Any) -> LimitSpec | None:
    """The spec a task's options declare, or ``None`` when it declares none; ``LimitError`` if malformed."""
    if concurrency is None and rate_limit is None and circuit_breaker is None:
        return None
    return LimitSpec(
        task_key(task_path),
        parse_concurrency(concurrency) if concurrency is not None else None,
        parse_rate(rate_limit) if rate_limit is not None else None,
        parse_breaker(circuit_breaker) if circuit_breaker is not None else None,
    )


QUEUE_LIMIT_KEYS = frozenset({"concurrency", "rate_limit"})


def queue_spec(queue_name: str, value: object) -> LimitSpec:
    """One ``QUEUE_LIMITS`` entry as a spec; ``LimitError`` if malformed."""
    if not isinstance(value, Mapping) or not value or set(value) - QUEUE_LIMIT_KEYS:
        raise LimitError(
            f"QUEUE_LIMITS[{queue_name!r}] must be a dict with 'concurrency' and/or 'rate_limit' "
            f"(got {value!r})."
        )
    concurrency, rate = value.get("concurrency"), value.get("rate_limit")
    return LimitSpec(
        queue_key(queue_name),
        parse_concurrency(concurrency) if concurrency is not None else None,
        parse_rate(rate) if rate is not None else None,
    )


def queue_specs(queue_limits: Mapping[str, Any]) -> dict[str, LimitSpec]:
    return {name: queue_spec(name, value) for name, value in queue_limits.items()}


def check_queue_limits(value: object) -> list[str]:
    """What is wrong with a ``QUEUE_LIMITS`` value: one message per bad entry."""
    if not isinstance(value, Mapping):
        return [f"QUEUE_LIMITS must be a dict of queue name to limits (got {value!r})."]
    problems = []
    for name, entry in value.items():
        if not isinstance(name, str) or not name:
            problems.append(f"QUEUE_LIMITS has a key that is not a queue name: {name!r}.")
            continue
        try:
            queue_spec(name, entry)
        except LimitError as exc:
            problems.append(str(exc))
    return problems


# The arithmetic both stores use (PostgreSQL's claim does the same in SQL).


def micros(moment: datetime) -> int:
    """``moment`` in whole microseconds since the epoch: how the window of recent starts keeps time.

    Whole numbers compare exactly, in Python and in SQL alike; a start exactly one
    window ago has left the window.
    """
    return (moment - EPOCH) // timedelta(microseconds=1)


def window_micros(window: float) -> int:
    return round(window * 1_000_000)


def rate_room(starts: Sequence[int], rate_limit: int | None, window: float | None, now: int) -> int:
    """Starts a rate still allows at ``now``, given the recent ``starts`` (all in :func:`micros`)."""
    if rate_limit is None or window is None:
        return UNLIMITED
    since = now - window_micros(window)
    return max(rate_limit - sum(1 for t in starts if t > since), 0)


def starts_after(
    starts: Sequence[int], rate_limit: int | None, window: float | None, now: int, started: int
) -> list[int]:
    """The recent starts once ``started`` more began at ``now``: the last ``rate_limit``, oldest first."""
    if rate_limit is None or window is None:
        return []
    since = now - window_micros(window)
    recent = sorted(t for t in starts if t > since) + [now] * started
    return recent[-rate_limit:]


def next_rate_opening(
    starts: Sequence[int], rate_limit: int | None, window: float | None, now: int
) -> int | None:
    """When (:func:`micros`) a full window lets one more start, or ``None`` if it lets one now."""
    if rate_room(starts, rate_limit, window, now) > 0:
        return None
    assert rate_limit is not None and window is not None
    since = now - window_micros(window)
    recent = sorted(t for t in starts if t > since)
    return recent[-rate_limit] + window_micros(window)


def circuit_room(threshold: int | None, open_until: datetime | None, trial_job_id: Any, now: datetime) -> int:
    """Closed (or no breaker): no limit. Open: none until ``open_until``, then one trial attempt at a time."""
    if threshold is None or open_until is None:
        return UNLIMITED
    if trial_job_id is not None or open_until > now:
        return 0
    return 1


def within_queue_limits(
    candidates: Sequence[tuple[Any, str]], queue_room: Mapping[str, int], room: int
) -> list[Any]:
    """The ids among ``(id, queue_name)`` candidates (best first) that their queues' limits let start.

    A queue without an entry in ``queue_room`` does not limit; at most ``room`` ids.
    """
    taken: dict[str, int] = {}
    chosen: list[Any] = []
    for job_id, queue_name in candidates:
        if len(chosen) >= room:
            break
        if queue_name in queue_room and taken.get(queue_name, 0) >= queue_room[queue_name]:
            continue
        taken[queue_name] = taken.get(queue_name, 0) + 1
        chosen.append(job_id)
    return chosen


@dataclass
class Circuit:
    """A circuit breaker's state, as its ``Limit`` row holds it."""

    key: str
    breaker: Breaker
    failures: int = 0
    open_until: datetime | None = None
    opened_at: datetime | None = None
    trial_job_id: Any = None


@dataclass(frozen=True, slots=True)
class CircuitChange:
    """A circuit opened (``opened``; again after a failed trial too) or closed."""

    key: str
    opened: bool
    failures: int
    until: datetime | None = None
    """While open: no attempt starts before this."""
    reason: str = ""

    @property
    def task_path(self) -> str:
        return self.key.removeprefix(TASK_PREFIX)


def after_attempt(circuit: Circuit, job_id: Any, failed: bool, now: datetime) -> CircuitChange | None:
    """Count one attempt's outcome on ``circuit`` (changed in place); the change it caused, if any.

    Closed: a failure adds to the consecutive failures and opens the circuit at the
    threshold; a success clears them. Open: only the trial attempt counts: its
    success closes the circuit, its failure opens it for another cooldown. Attempts
    that were already running when it opened change nothing.
    """
    if circuit.open_until is None:
        circuit.failures = circuit.failures + 1 if failed else 0
        if failed and circuit.failures >= circuit.breaker.threshold:
            return _open(circuit, now, f"{circuit.failures} consecutive failed attempts")
        return None
    if circuit.trial_job_id is None or circuit.trial_job_id != job_id:
        return None
    circuit.trial_job_id = None
    if failed:
        circuit.failures += 1
        return _open(circuit, now, "the trial attempt failed")
    return close(circuit, "the trial attempt succeeded")


def _open(circuit: Circuit, now: datetime, reason: str) -> CircuitChange:
    circuit.open_until = now + timedelta(seconds=circuit.breaker.cooldown)
    circuit.opened_at = now
    return CircuitChange(circuit.key, True, circuit.failures, circuit.open_until, reason)


def close(circuit: Circuit, reason: str) -> CircuitChange:
    failures = circuit.failures
    circuit.failures, circuit.open_until, circuit.opened_at, circuit.trial_job_id = 0, None, None, None
    return CircuitChange(circuit.key, False, failures, None, reason)
