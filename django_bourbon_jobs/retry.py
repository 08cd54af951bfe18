"""The retry policy: after a failed attempt, retry at a time, or give up."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.exceptions import Fail, Retry

if TYPE_CHECKING:
    from django.tasks import Task, TaskResult


REFUNDS_PER_JOB = 10
"""Attempts of one job given back because they failed through no fault of its own (a broken
database connection, a lease that ran out before the job was seen to start); past this they count,
so a job that keeps taking its worker down still runs out of attempts."""


def refund_delay(refunded: int) -> float:
    """Seconds before an attempt given back is tried again: ``BACKOFF_BASE`` doubling, with jitter."""
    conf = get_settings()
    step = min(conf.BACKOFF_MAX, conf.BACKOFF_BASE * 2**refunded)
    return random.uniform(step / 2, step)


def exponential_backoff(exception: BaseException, task_result: TaskResult) -> float | None:
    """``BACKOFF_BASE * 2**(attempt-1)`` seconds, capped at ``BACKOFF_MAX``, with equal jitter.

    The delay is drawn from the upper half of the exponential step, so retries
    of jobs that failed together spread out yet still back off.
    """
    conf = get_settings()
    step = min(conf.BACKOFF_MAX, conf.BACKOFF_BASE * 2 ** max(task_result.attempts - 1, 0))
    return random.uniform(step / 2, step)


def next_attempt_at(
    task: Task | None,
    exception: BaseException,
    task_result: TaskResult,
    attempts: int,
    max_attempts: int,
    now: datetime,
) -> datetime | None:
    """When to try again, or ``None`` to fail for good."""
    if isinstance(exception, Fail) or attempts >= max_attempts:
        return None
    if isinstance(exception, Retry):
        return now + timedelta(seconds=exception.delay)
    from django_bourbon_jobs.tasks import backoff_of

    backoff = backoff_of(task) if task is not None else get_settings().default_backoff
    delay = backoff(exception, task_result)
    if delay is None:
        return None
    return now + timedelta(seconds=max(float(delay), 0.0))
