"""Announcing a circuit breaker's change: a log line, and ``circuit_opened`` or ``circuit_closed``."""

from __future__ import annotations

import logging

from django_bourbon_jobs.limits import CircuitChange
from django_bourbon_jobs.models import Limit
from django_bourbon_jobs.signals import circuit_closed, circuit_opened

logger = logging.getLogger("django_bourbon_jobs.circuits")


def announce(change: CircuitChange) -> None:
    """Call once the change is committed."""
    fields = {
        "circuit": change.key,
        "task": change.task_path,
        "failures": change.failures,
        "reason": change.reason,
    }
    if change.opened:
        assert change.until is not None
        logger.warning(
            "circuit %s opened until %s: %s",
            change.key,
            change.until.isoformat(),
            change.reason,
            extra=fields,
        )
        circuit_opened.send(
            sender=Limit,
            key=change.key,
            task_path=change.task_path,
            until=change.until,
            failures=change.failures,
            reason=change.reason,
        )
    else:
        logger.info("circuit %s closed: %s", change.key, change.reason, extra=fields)
        circuit_closed.send(
            sender=Limit,
            key=change.key,
            task_path=change.task_path,
            failures=change.failures,
            reason=change.reason,
        )
