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


@task(max_attempts=3)
def returns_set_retryable(payload):
    return {1, 2}


def _unescaped(payload):
    """The fault tests' text travels escaped: PostgreSQL's jsonb cannot hold a NUL even in a payload."""
    return payload["escaped"].encode().decode("unicode_escape")


@task(max_attempts=3)
def returns_text(payload):
    return _unescaped(payload)


@task(max_attempts=2, backoff=lambda exc, result: 0)
def raises_text(payload):
    raise ValueError(_unescaped(payload))


@task(takes_context=True)
def reports_text(context, payload):
    context.report_progress(1, 2, _unescaped(payload))
    return "reported"


@task(max_attempts=1)
def counts_jobs(payload):
    """Uses the database from job code, as most real jobs do."""
    from django_bourbon_jobs.models import Job

    return Job.objects.count()


@task(takes_context=True, max_attempts=1)
def drops_own_connection_once(context, payload):
    """PostgreSQL: the first attempt's connection is terminated under it, as a server restart would."""
    from django.db import connection

    marker = Path(payload["path"])
    if not marker.exists():
        marker.write_text("dropped")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ran on a fresh connection"


@task(max_attempts=1)
def kills_own_process(payload):
    """A poison job: its process dies under it (``signal``: a signal number, else ``os._exit(code)``)."""
    import signal as signals

    Path(payload["started"]).write_text(str(os.getpid()))
    if payload.get("signal"):
        os.kill(os.getpid(), signals.Signals(payload["signal"]))
    os._exit(payload.get("code", 1))


@task(max_attempts=1)
def naps(payload):
    """Writes its marker to ``path`` (one line per run), after ``seconds`` asleep."""
    time.sleep(payload.get("seconds", 0.05))
    with open(payload["path"], "a") as fh:
        fh.write(f"{payload['n']}\n")
    return payload["n"]


@task(max_attempts=1)
def hogs_memory(payload):
    """Holds ``mb`` megabytes until ``release`` exists (``--max-memory`` tests)."""
    block = bytearray(payload["mb"] * 2**20)
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    Path(payload["started"]).write_text(str(os.getpid()))
    deadline = time.monotonic() + 30
    while not Path(payload["release"]).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(block) // 2**20


@task(max_attempts=2)
def naps_twice(payload):
    return naps.func(payload)


@task(max_attempts=1)
def returns_bytes_and_tuples(payload):
    """What Django normalises on the way out: UTF-8 bytes to text, tuples to lists."""
    return {"text": b"caf\xc3\xa9", "pair": (1, (2, 3))}


@task
def echo_later(payload):
    """Dispatches ``echo`` with its payload: a job that queues another."""
    return echo.enqueue(payload).id


@task
def returns_tuple(payload):
    return (payload, payload)


@task
def tick(*args, **kwargs):
    """A periodic schedule's task: returns what it was called with."""
    return {"args": list(args), "kwargs": kwargs}


@task(queue_name="reports", priority=7)
def routed_tick(*args, **kwargs):
    return "routed"


@task(unique_key=lambda payload: f"sync-user-{payload['user']}" if payload.get("user") else None)
def sync_user(payload):
    """A unique job whose key comes from its payload; no user, no key."""
    return payload.get("user")


@task(unique_key="rebuild-index", unique_while="queued")
def rebuild_index(payload=None):
    return "rebuilt"


def _record_span(payload, started):
    """Append ``start end`` (epoch seconds) to ``payload['path']``: one short line, one O_APPEND write."""
    time.sleep(payload.get("seconds", 0.05))
    with open(payload["path"], "a") as fh:
        fh.write(f"{started!r} {time.time()!r}\n")


@task(takes_context=True)
def span(context, payload):
    """Appends ``attempt-start start end`` (epoch seconds) to ``payload['path']`` after ``seconds``."""
    attempt_started = context.task_result.last_attempted_at.timestamp()
    started = time.time()
    time.sleep(payload.get("seconds", 0.05))
    with open(payload["path"], "a") as fh:
        fh.write(f"{attempt_started!r} {started!r} {time.time()!r}\n")


@task(concurrency=3)
def three_at_a_time(payload):
    _record_span(payload, time.time())


@task(concurrency=2)
def two_at_a_time(payload):
    return payload


@task(rate_limit="5/s", takes_context=True)
def five_per_second(context, payload):
    """Appends ``attempt-start body-start`` (epoch seconds): the claim's recorded start, and the code's."""
    attempt_started = context.task_result.last_attempted_at.timestamp()
    with open(payload["path"], "a") as fh:
        fh.write(f"{attempt_started!r} {time.time()!r}\n")


@task(rate_limit="3/s")
def three_per_second(payload):
    return payload


@task(concurrency=1, queue_name="emails")
def one_email_at_a_time(payload):
    return payload


@task(circuit_breaker={"threshold": 3, "cooldown": 1}, max_attempts=1)
def guarded(payload):
    """Fails while the file ``payload['down']`` exists: a service that is down.

    With ``payload['spans']``, each call appends ``start end`` (wall-clock seconds) there.
    """
    began = time.time()
    try:
        if Path(payload["down"]).exists():
            raise ConnectionError("the service is down")
        time.sleep(payload.get("seconds", 0))
        return "up"
    finally:
        if "spans" in payload:
            with open(payload["spans"], "a") as fh:
                fh.write(f"{began!r} {time.time()!r}\n")
