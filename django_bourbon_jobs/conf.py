"""One typed settings object over ``settings.BOURBON_JOBS``.

Every key has a default. :func:`validate` names each bad key; the system check
``bourbon_jobs.E001``/``E002`` reports its findings at start-up, and
:func:`get_settings` raises the first one if code runs with a broken setting.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from django_bourbon_jobs.exceptions import ConfigurationError
from django_bourbon_jobs.limits import LimitSpec, check_queue_limits, queue_specs

DAY = 86400.0
DEFAULT_RETENTION: dict[str, float | None] = {"succeeded": 7 * DAY, "cancelled": 7 * DAY, "failed": 30 * DAY}


@dataclass(frozen=True, slots=True)
class BourbonSettings:
    DEFAULT_MAX_ATTEMPTS: int = 3
    """Attempts a job gets when its task does not say (``@task(max_attempts=...)``)."""
    DEFAULT_TIMEOUT: float | None = 600.0
    """Seconds an attempt may run when its task does not say; ``None`` for no limit."""
    DEFAULT_BACKOFF: str = "django_bourbon_jobs.retry.exponential_backoff"
    """Import path of the backoff used when a task does not pass ``backoff=``."""
    BACKOFF_BASE: float = 2.0
    """Delay in seconds before the second attempt; it doubles per attempt."""
    BACKOFF_MAX: float = 3600.0
    """Upper bound of one backoff delay, in seconds."""
    LEASE_SECONDS: float = 60.0
    """How long a claim holds without a heartbeat before the job is rescued."""
    HEARTBEAT_SECONDS: float = 10.0
    """How often a worker renews its leases and its ``Worker`` row."""
    POLL_INTERVAL: float = 1.0
    """Seconds an idle worker waits between polls (and the LISTEN/NOTIFY safety net)."""
    BATCH_SIZE: int = 32
    """Jobs claimed per query by one worker process."""
    TIMEOUT_GRACE: float = 10.0
    """Seconds an overrunning job gets to unwind before its process is replaced."""
    SHUTDOWN_GRACE: float = 30.0
    """Seconds running jobs get to finish after SIGTERM/SIGINT."""
    RESCUE_INTERVAL: float = 15.0
    """How often the supervisor looks for expired leases and dead workers."""
    STATUS_URL_NAME: str | None = None
    """URL name reversed with ``job_id=`` for ``dispatch_async_json``'s ``status_url``."""
    RETENTION: Mapping[str, float | None] = field(default_factory=lambda: dict(DEFAULT_RETENTION))
    """Seconds a finished job is kept, per final status; ``None`` keeps it forever.

    Keys you leave out keep their default (see ``DEFAULT_RETENTION``)."""
    PRUNE_BATCH: int = 1000
    """Rows one pruning DELETE removes; small batches never hold long locks."""
    IDEMPOTENCY_WINDOW: float = 86400.0
    """Seconds during which a repeated ``idempotency_key`` from one dispatcher returns the first job."""
    PROGRESS_INTERVAL: float = 1.0
    """Least seconds between two stored progress reports of one job (the last one is always stored)."""
    API_TASKS: Mapping[str, str] | Sequence[str] = field(default_factory=dict)
    """Tasks the HTTP API may dispatch: ``{"alias": "path.to.task"}`` or a list of task paths."""
    API_MAX_PAYLOAD_BYTES: int = 65536
    """Largest JSON payload the HTTP API accepts."""
    API_MAX_PAYLOAD_DEPTH: int = 32
    """Deepest nesting of lists and objects the HTTP API accepts in a payload; deeper is a 400."""
    STREAMS_PER_USER: int = 10
    """Event streams (API and admin dashboard) one user may hold open in one process; more is a 429."""
    STREAMS_PER_PROCESS: int = 500
    """Event streams one server process holds open in all (each holds a thread); more is a 429."""
    REDIS_NAMESPACE: str | None = None
    """Prefix of every Redis channel; ``None``: the Redis cache's ``KEY_PREFIX`` and the database name."""
    WEBHOOK_SECRET: str = ""
    """Shared secret for the HMAC-SHA256 signature of completion webhooks."""
    WEBHOOK_ALLOWED_HOSTS: Sequence[str] = field(default_factory=list)
    """Hosts webhooks may be sent to; ``.example.com`` matches the domain and its subdomains."""
    WEBHOOK_ALLOWED_PORTS: Sequence[int] = (443, 80)
    """Ports webhooks may be sent to; any other port on an allowed host is refused (no port scans)."""
    WEBHOOK_ALLOWED_NETWORKS: Sequence[str] = field(default_factory=list)
    """Non-public networks webhooks may reach (``"10.0.0.0/8"``); public addresses need no listing."""
    WEBHOOK_TIMEOUT: float = 10.0
    """Seconds one webhook delivery attempt may take."""
    PERIODIC: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Periodic schedules: ``{"name": {"task": "path", "cron": "0 3 * * *"}}`` (docs/periodic.md).

    Each entry is checked by the system checks ``bourbon_jobs.E020``-``E028``."""
    PERIODIC_GRACE: float = 60.0
    """Seconds after its time a scheduled run may still fire; later, it counts as missed."""
    QUEUE_LIMITS: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per queue: ``{"emails": {"concurrency": 5, "rate_limit": "10/s"}}`` (docs/flow-control.md)."""

    @property
    def default_backoff(self) -> Callable[..., float | None]:
        return _import_callable(self.DEFAULT_BACKOFF)


_POSITIVE_NUMBERS = {
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "LEASE_SECONDS",
    "HEARTBEAT_SECONDS",
    "POLL_INTERVAL",
    "RESCUE_INTERVAL",
    "IDEMPOTENCY_WINDOW",
    "PROGRESS_INTERVAL",
    "WEBHOOK_TIMEOUT",
    "PERIODIC_GRACE",
}
_NON_NEGATIVE_NUMBERS = {"TIMEOUT_GRACE", "SHUTDOWN_GRACE"}
_POSITIVE_INTEGERS = {
    "DEFAULT_MAX_ATTEMPTS",
    "BATCH_SIZE",
    "PRUNE_BATCH",
    "API_MAX_PAYLOAD_BYTES",
    "API_MAX_PAYLOAD_DEPTH",
    "STREAMS_PER_USER",
    "STREAMS_PER_PROCESS",
}
_TIMING_KEYS = ("HEARTBEAT_SECONDS", "LEASE_SECONDS")


@functools.cache
def _import_callable(path: str) -> Callable[..., Any]:
    obj = import_string(path)
    if not callable(obj):
        raise ImportError(f"{path} is not callable")
    return obj


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_key(key: str, value: object) -> str | None:
    """Return what is wrong with one value, or ``None``."""
    if key in _POSITIVE_INTEGERS and not (
        isinstance(value, int) and not isinstance(value, bool) and value >= 1
    ):
        return "must be a whole number of at least 1"
    if key in _POSITIVE_NUMBERS and not (_is_number(value) and value > 0):  # type: ignore[operator]
        return "must be a number greater than 0"
    if key in _NON_NEGATIVE_NUMBERS and not (_is_number(value) and value >= 0):  # type: ignore[operator]
        return "must be a number of at least 0"
    if key == "DEFAULT_TIMEOUT" and value is not None and not (_is_number(value) and value > 0):  # type: ignore[operator]
        return "must be a number of seconds greater than 0, or None"
    if key == "STATUS_URL_NAME" and value is not None and not isinstance(value, str):
        return "must be a URL name (a string) or None"
    if key == "RETENTION":
        return _check_retention(value)
    if key == "API_TASKS" and not _is_str_collection(value, mapping_ok=True):
        return "must be a dict of alias to task path, or a list of task paths"
    if key == "WEBHOOK_ALLOWED_HOSTS" and not _is_str_collection(value, mapping_ok=False):
        return "must be a list of host names"
    if key == "WEBHOOK_ALLOWED_HOSTS" and "*" in value:  # type: ignore[operator]
        return "must list host names: '*' would let callers make the server call any address"
    if key == "REDIS_NAMESPACE" and value is not None and not isinstance(value, str):
        return "must be a string, or None to derive it from KEY_PREFIX and the database name"
    if key == "WEBHOOK_ALLOWED_PORTS" and not _is_port_list(value):
        return "must be a list of port numbers (1-65535)"
    if key == "WEBHOOK_ALLOWED_NETWORKS" and not _is_network_list(value):
        return "must be a list of networks such as '10.0.0.0/8' or '::1/128'"
    if key == "PERIODIC" and not isinstance(value, Mapping):
        return "must be a dict of schedule name to schedule"
    if key == "WEBHOOK_SECRET" and not isinstance(value, str):
        return "must be a string"
    if key == "DEFAULT_BACKOFF":
        if not isinstance(value, str):
            return "must be the import path of a callable"
        try:
            _import_callable(value)
        except ImportError as exc:
            return f"cannot be imported ({exc})"
    return None


def _is_str_collection(value: object, mapping_ok: bool) -> bool:
    if isinstance(value, Mapping):
        return mapping_ok and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    return isinstance(value, list | tuple) and all(isinstance(item, str) for item in value)


def _is_port_list(value: object) -> bool:
    return isinstance(value, list | tuple) and all(
        isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535 for port in value
    )


def _is_network_list(value: object) -> bool:
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        return False
    try:
        for item in value:
            ipaddress.ip_network(item)
    except ValueError:
        return False
    return True


def _check_retention(value: object) -> str | None:
    if not isinstance(value, Mapping):
        return f"must be a dict of {', '.join(DEFAULT_RETENTION)} to seconds (or None)"
    unknown = sorted(set(value) - set(DEFAULT_RETENTION))
    if unknown:
        return f"has unknown statuses {unknown}; use {', '.join(DEFAULT_RETENTION)}"
    for status, seconds in value.items():
        if seconds is not None and not (_is_number(seconds) and seconds > 0):
            return f"[{status!r}] must be a number of seconds greater than 0, or None"
    return None


def validate(raw: object) -> list[tuple[str, str]]:
    """Return ``(check id, message)`` for every problem in a ``BOURBON_JOBS`` value."""
    if not isinstance(raw, dict):
        return [("bourbon_jobs.E001", "BOURBON_JOBS must be a dict.")]
    known = {f.name for f in fields(BourbonSettings)}
    problems = [
        ("bourbon_jobs.E001", f"BOURBON_JOBS has an unknown key {key!r}.") for key in sorted(set(raw) - known)
    ]
    problems += [
        ("bourbon_jobs.E030", message) for message in check_queue_limits(raw.get("QUEUE_LIMITS", {}))
    ]
    for key in sorted(set(raw) & known):
        reason = _check_key(key, raw[key])
        if reason:
            problems.append(("bourbon_jobs.E002", f"BOURBON_JOBS[{key!r}] {reason} (got {raw[key]!r})."))
    merged = {**{f.name: f.default for f in fields(BourbonSettings) if f.name in _TIMING_KEYS}, **raw}
    timing_ok = not any(f"'{key}'" in message for _, message in problems for key in _TIMING_KEYS)
    if timing_ok and merged["HEARTBEAT_SECONDS"] >= merged["LEASE_SECONDS"]:
        problems.append(
            (
                "bourbon_jobs.E002",
                "BOURBON_JOBS['HEARTBEAT_SECONDS'] must be shorter than LEASE_SECONDS, "
                "or leases expire between heartbeats.",
            )
        )
    return problems


@functools.cache
def get_settings() -> BourbonSettings:
    raw = getattr(django_settings, "BOURBON_JOBS", {})
    problems = validate(raw)
    if problems:
        raise ConfigurationError(problems[0][1])
    if "RETENTION" in raw:
        raw = {**raw, "RETENTION": {**DEFAULT_RETENTION, **raw["RETENTION"]}}
    return BourbonSettings(**raw)


@functools.cache
def queue_limit_specs() -> dict[str, LimitSpec]:
    """``QUEUE_LIMITS`` parsed, by queue name."""
    return queue_specs(get_settings().QUEUE_LIMITS)


@receiver(setting_changed)
def _reset_settings(*, setting: str, **kwargs: Any) -> None:
    if setting == "BOURBON_JOBS":
        get_settings.cache_clear()
        queue_limit_specs.cache_clear()
