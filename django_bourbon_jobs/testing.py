"""Helpers for your project's tests: run due jobs in-process, check what was dispatched, run jobs at once.

- :func:`drain` runs every due job in this process, on the same worker that ``runworkers`` forks,
  and returns what ran;
- :func:`dispatched` and :func:`assert_dispatched` read what was dispatched (the job rows, so a
  dispatch from anywhere counts: a view, a signal handler, another job);
- :func:`run_immediately` runs each job as soon as its dispatch commits, through the database
  and the worker, so its arguments and result make the JSON round trip they make in production.

The worker's threads use database connections of their own, so they see committed rows only:
:func:`drain` and :func:`run_immediately` need a ``TransactionTestCase`` (pytest:
``django_db(transaction=True)``), and refuse to run inside a transaction. See docs/testing.md.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections, transaction
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, Task, TaskResult
from django.tasks.signals import task_enqueued, task_started
from django.utils import timezone

from django_bourbon_jobs.backends.database import DatabaseBackend
from django_bourbon_jobs.models import Job
from django_bourbon_jobs.results import to_task_result
from django_bourbon_jobs.worker.maintenance import release_held_steps
from django_bourbon_jobs.worker.process import WorkerConfig, WorkerProcess

__all__ = ["assert_dispatched", "dispatched", "drain", "run_immediately"]

_draining = threading.Event()
"""Set while :func:`drain` runs: a job dispatched by a running job is claimed by that drain."""

IN_TRANSACTION = (
    "runs jobs on worker threads with database connections of their own, which cannot see this "
    "transaction's rows. Use a TransactionTestCase (pytest: django_db(transaction=True)) and "
    "dispatch outside transaction.atomic()."
)


class DrainInTransaction(RuntimeError):
    """:func:`drain` was called inside a transaction, whose rows the worker's threads cannot see."""


def drain(
    *, queues: Iterable[str] = (), using: str = "default", max_jobs: int | None = None
) -> list[TaskResult]:
    """Run the jobs that are due, in this process, until none is; return what ran, oldest start first.

    The worker is the one ``runworkers`` forks, in burst mode, with one thread: jobs are
    claimed, run, retried and recorded as in production. A retry whose backoff has not
    elapsed, or a job whose ``run_after`` is later, stays queued. Each :class:`TaskResult`
    is the job's state once the drain is over; a job that ran twice (a retry due at once)
    is listed once.
    """
    if connections[using].in_atomic_block:
        raise DrainInTransaction(f"drain() {IN_TRANSACTION}")
    started: dict[str, TaskResult] = {}

    def note_start(sender: Any, task_result: TaskResult, **kwargs: Any) -> None:
        started.setdefault(task_result.id, task_result)

    task_started.connect(note_start, weak=False)
    _draining.set()
    try:
        while max_jobs is None or len(started) < max_jobs:
            left = None if max_jobs is None else max_jobs - len(started)
            config = WorkerConfig(queues=frozenset(queues), threads=1, burst=True, using=using, max_jobs=left)
            WorkerProcess(config).run()
            if not release_held_steps(timezone.now(), using):  # a supervisor's duty under runworkers
                break
    finally:
        _draining.clear()
        task_started.disconnect(note_start)
    for result in started.values():
        result.refresh()
    return list(started.values())


def dispatched(task: Task | None = None, *, using: str = "default") -> list[TaskResult]:
    """The jobs dispatched so far (of ``task`` only, if given), oldest first, as ``TaskResult``s."""
    jobs = Job.objects.using(using).order_by("enqueued_at", "id")
    if task is not None:
        jobs = jobs.filter(task_path=task.module_path)
    return [to_task_result(job, task.backend if task else DEFAULT_TASK_BACKEND_ALIAS) for job in jobs]


def assert_dispatched(task: Task, *args: Any, using: str = "default", **kwargs: Any) -> TaskResult:
    """Assert that ``task`` was dispatched with these arguments; return that job (the latest, if several).

    Arguments compare as the job stores them, after the JSON round trip (a tuple matches a
    list). ``dispatch_async(task, payload)`` calls ``task(payload)``, so it matches
    ``assert_dispatched(task, payload)``. Options are on the result:
    ``result.task.queue_name``, ``result.task.priority``, ``result.task.run_after``.
    """
    wanted = (_as_stored(list(args)), _as_stored(kwargs))
    candidates = dispatched(task, using=using)
    matching = [result for result in candidates if (result.args, result.kwargs) == wanted]
    if matching:
        return matching[-1]
    seen = "".join(f"\n  args={result.args!r} kwargs={result.kwargs!r}" for result in candidates)
    instead = "it was never dispatched."
    if candidates:
        instead = f"it was dispatched {len(candidates)} time(s):{seen}"
    raise AssertionError(
        f"{task.module_path} was not dispatched with args={wanted[0]!r} kwargs={wanted[1]!r}; {instead}"
    )


@contextmanager
def run_immediately(*, using: str = "default") -> Iterator[None]:
    """Within the block, each dispatch to our backend runs its jobs as soon as it commits.

    Jobs are stored, claimed, run and recorded by the worker (:func:`drain`), so what a test
    sees is what production does, JSON round trip included; the ``TaskResult`` a dispatch
    returns is brought up to date once its job has run. A job dispatched by a running job is
    run by the same drain. Like :func:`drain`, it needs committed rows: dispatch outside
    ``transaction.atomic()`` in a ``TransactionTestCase``, or the jobs run when it commits.
    """

    def run_after_commit(sender: Any, task_result: TaskResult, **kwargs: Any) -> None:
        if not (isinstance(sender, type) and issubclass(sender, DatabaseBackend)):
            return
        if _in_test_case_transaction(using):
            raise DrainInTransaction(f"run_immediately() {IN_TRANSACTION}")
        transaction.on_commit(lambda: _run_now(task_result, using), using=using)

    task_enqueued.connect(run_after_commit, weak=False)
    try:
        yield
    finally:
        task_enqueued.disconnect(run_after_commit)


def _run_now(task_result: TaskResult, using: str) -> None:
    """Drain now, unless a drain is running on this thread (it will claim the new job too)."""
    if not _draining.is_set():
        drain(using=using)
    task_result.refresh()


def _in_test_case_transaction(using: str) -> bool:
    """Inside a ``TestCase``'s transaction, which never commits (Django marks its atomic blocks)."""
    return any(getattr(block, "_from_testcase", False) for block in connections[using].atomic_blocks)


def _as_stored(value: Any) -> Any:
    """``value`` as a job stores it: through JSON."""
    return json.loads(json.dumps(value))
