"""The chaos tasks: a plain job that records each execution, and poison jobs made to fail.

Every poison task has ``max_attempts=1``: it is meant to end ``failed`` after one
attempt, and ``bench/chaos.py`` counts it apart from the plain jobs.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from django.tasks import task
from django.utils import timezone

from chaosapp.models import Execution

POISON_ATTEMPTS = 1
HOG_STEP_MB = 32


def mark_start(sender: Any, task_result: Any, **kwargs: Any) -> None:
    """``task_started`` receiver: append one line to ``CHAOS_STARTS`` as the attempt starts.

    An attempt counts as started when Django's ``task_started`` has been sent for it;
    the worker records its own start (what decides whether a lost attempt is charged)
    just after that, right before calling the task. So a job the worker charges always
    has a line here, and "failed, never started" counts jobs charged for an attempt
    that never started (prefetched jobs, say). ``O_APPEND`` writes this short are atomic.
    """
    path = os.environ.get("CHAOS_STARTS")
    if path:
        with open(path, "a") as out:
            out.write(f"{task_result.id} {task_result.attempts} {task_result.worker_ids[-1]} {os.getpid()}\n")


def _execute(context: Any, payload: dict[str, Any]) -> dict[str, int]:
    """Record this execution (job id, attempt, worker), sleep ``sleep_ms``, mark it finished."""
    result = context.task_result
    execution = Execution.objects.create(
        job_id=result.id,
        attempt=context.attempt,
        worker_id=result.worker_ids[-1],
        pid=os.getpid(),
        started_at=timezone.now(),
    )
    time.sleep(payload.get("sleep_ms", 5) / 1000)
    Execution.objects.filter(pk=execution.pk).update(finished_at=timezone.now())
    return {"pid": os.getpid()}


@task(takes_context=True)
def plain(context: Any, payload: dict[str, Any]) -> dict[str, int]:
    """A well-behaved job with the default ``max_attempts`` (``DEFAULT_MAX_ATTEMPTS``)."""
    return _execute(context, payload)


@task(takes_context=True, max_attempts=1)
def plain_once(context: Any, payload: dict[str, Any]) -> dict[str, int]:
    """The same job with one attempt: a job lost before it started must not end failed."""
    return _execute(context, payload)


@task(max_attempts=POISON_ATTEMPTS)
def exit_hard(payload: Any = None) -> None:
    """Ends its worker process at once, with no clean-up: ``os._exit(1)``."""
    os._exit(1)


@task(max_attempts=POISON_ATTEMPTS)
def kill_self(payload: Any = None) -> None:
    """SIGKILLs its own worker process."""
    os.kill(os.getpid(), signal.SIGKILL)


@task(max_attempts=POISON_ATTEMPTS, timeout=20)
def hog(payload: dict[str, Any]) -> None:
    """Allocates (and touches) memory in steps until killed, up to ``cap_mb``, then holds it.

    Capped so that a worker without a memory limit does not take the machine down;
    it then holds the memory in an interruptible sleep until its timeout ends it.
    """
    chunks = []
    while len(chunks) * HOG_STEP_MB < payload.get("cap_mb", 1024):
        chunks.append(b"\xff" * (HOG_STEP_MB << 20))
        time.sleep(0.02)
    while True:
        time.sleep(0.05)


@task(max_attempts=POISON_ATTEMPTS, timeout=1)
def stuck_in_c(payload: Any = None) -> None:
    """Blocks in C (``time.sleep(30)``) far past its 1 s timeout: the interrupt cannot reach it."""
    time.sleep(30)


@task(max_attempts=POISON_ATTEMPTS)
def nul_return(payload: Any = None) -> str:
    """Returns a string with a NUL character, which PostgreSQL's ``jsonb`` cannot store."""
    return "a\x00b"
