"""Module-level tasks the tests enqueue (workers import them by path)."""

import os
import time
from pathlib import Path

from django.tasks import task

from django_bourbon_jobs import Fail, Retry


@task
def echo(payload):
    return payload


@task(priority=10, queue_name="emails", max_attempts=5, timeout=30)
def send_welcome_email(payload):
    return {"sent_to": payload["email"]}


@task
def record(payload):
    """Append this job's marker to a file: counts how often each job really ran."""
    with open(payload["path"], "a") as fh:
        fh.write(f"{payload['n']}\n")
    return payload["n"]


@task(max_attempts=3, backoff=lambda exc, result: 0)
def flaky(payload):
    """Fails until it has been attempted ``payload['succeed_on']`` times."""
    marker = Path(payload["path"])
    attempts = int(marker.read_text() or 0) + 1 if marker.exists() else 1
    marker.write_text(str(attempts))
    if attempts < payload["succeed_on"]:
        raise RuntimeError(f"attempt {attempts} fails")
    return attempts


@task(max_attempts=2, backoff=lambda exc, result: 0)
def always_fails(payload):
    raise ValueError("this job always fails")


@task(max_attempts=5)
def fails_now(payload):
    raise Fail("permanent problem")


@task(max_attempts=3)
def asks_retry(payload):
    raise Retry(delay=payload.get("delay", 0))


@task(max_attempts=3, backoff=lambda exc, result: None)
def no_retry_backoff(payload):
    raise RuntimeError("do not retry me")


@task(max_attempts=1)
def returns_set(payload):
    return {1, 2}


@task(timeout=0.3, max_attempts=2, backoff=lambda exc, result: 0)
def sleeps(payload):
    time.sleep(payload["seconds"])
    return "woke"


@task(timeout=0.2, max_attempts=1)
def spins(payload):
    deadline = time.monotonic() + payload["seconds"]
    while time.monotonic() < deadline:
        pass
    return "done"


@task
def wait_for_file(payload):
    """Signals it started (``started`` file), then blocks until ``release`` exists or ``seconds`` pass."""
    Path(payload["started"]).write_text(str(os.getpid()))
    deadline = time.monotonic() + payload.get("seconds", 30)
    while not Path(payload["release"]).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return "released"


@task(takes_context=True)
def with_context(context, payload):
    return {"attempt": context.attempt, "id": context.task_result.id}


@task
async def async_echo(payload):
    return payload


def not_a_task(payload):
    return payload


@task(max_attempts=3)
def fails_with_default_backoff(payload):
    raise RuntimeError("uses the default backoff")


@task(takes_context=True)
def reports_progress(context, payload):
    """Reports three steps, and returns what the database held right after them."""
    from django_bourbon_jobs.models import Job

    for step in (1, 2, 3):
        context.report_progress(step, 3, f"step {step}")
    return Job.objects.get(pk=context.task_result.id).progress


@task(takes_context=True, max_attempts=3)
def stops_when_asked(context, payload):
    Path(payload["started"]).write_text("running")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        context.raise_if_cancel_requested()
        time.sleep(0.01)
    return "never asked"


@task(max_attempts=3)
def ignores_cancel(payload):
    Path(payload["started"]).write_text("running")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pass
    return "ran to the end"


@task(takes_context=True)
def progress_steps(context, payload):
    """Before each of ``steps`` steps waits for the file ``<dir>/go<n>``, then reports progress n of steps."""
    steps = payload["steps"]
    for n in range(1, steps + 1):
        gate = Path(payload["dir"]) / f"go{n}"
        deadline = time.monotonic() + 30
        while not gate.exists() and time.monotonic() < deadline:
            context.raise_if_cancel_requested()
            time.sleep(0.01)
        context.report_progress(n, steps, f"step {n}")
    return {"steps": steps}
