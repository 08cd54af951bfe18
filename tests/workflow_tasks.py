"""Tasks the workflow tests put in their steps (workers import them by path)."""

import time
from pathlib import Path

from django.tasks import task

from django_bourbon_jobs.exceptions import StepFailed


@task
def add_one(n):
    return n + 1


@task
def double(n):
    return n * 2


@task
def square(payload):
    return payload["n"] * payload["n"]


@task(takes_context=True)
def total(context, payload):
    """Sums its dependencies' results (by step name), and says which failed."""
    results = context.dependency_results
    failed = sorted(name for name, value in results.items() if isinstance(value, StepFailed))
    return {
        "sum": sum(value for value in results.values() if isinstance(value, int)),
        "failed": failed,
        "statuses": {name: results[name].status for name in failed},
        "payload": payload,
    }


@task(takes_context=True)
def shows_dependencies(context, payload):
    return {name: repr(value) for name, value in context.dependency_results.items()}


@task(max_attempts=1)
def breaks(payload):
    raise RuntimeError(f"step broke: {payload}")


@task(max_attempts=1)
def breaks_unless_file(payload):
    if not Path(payload["path"]).exists():
        raise RuntimeError("no file yet")
    return "file found"


@task
def note(payload):
    """Appends ``payload["mark"]`` (and when) to ``payload["path"]``: shows how often, and in which order."""
    with open(payload["path"], "a") as fh:
        fh.write(f"{payload['mark']} {time.time():.6f}\n")
    return payload["mark"]


@task
def noop(payload):
    return payload


@task(takes_context=True, max_attempts=1)
def waits_to_be_stopped(context, payload):
    """Marks it started, then waits (up to 30 s) for a cancel request."""
    Path(payload["started"]).write_text("running")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        context.raise_if_cancel_requested()
        time.sleep(0.01)
    return "never asked"
