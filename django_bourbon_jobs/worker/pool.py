"""The executor pool: the threads that run jobs, and every piece of state they share with the main loop.

Thread model. The main thread claims jobs, hands them to the pool
(:meth:`ExecutorPool.hand_over`) and later takes back the finished ones
(:meth:`ExecutorPool.take_finished`) to write their outcomes. Executor threads
take jobs from the pool's queue, run them, and leave them as finished. Everything
both sides touch lives here, behind the pool's one lock; nothing outside this
module reaches into it. Executor threads make no database write of the worker's
own (claims, outcomes, leases); the job's code and its progress reports use the
thread's own connections, which are handled around each job as Django handles
them around a request (:mod:`.db_connections`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, connections

from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.worker import db_connections
from django_bourbon_jobs.worker.executor import Executor, TimeoutInterrupt
from django_bourbon_jobs.worker.startlog import StartLog

logger = logging.getLogger("django_bourbon_jobs.worker")

FLUSH_AT = 32
"""Finished attempts that wake the main loop to write them, whatever else is queued."""
PROMPT_AFTER = 0.005
"""Seconds a job runs before its outcome is written without waiting for the batch."""


@dataclass
class _Shared:
    """What the main thread and the executor threads both touch; only under :attr:`ExecutorPool.lock`."""

    held: dict[Any, Job] = field(default_factory=dict)
    """Every job this process holds: claimed, running, or finished with its outcome not yet written."""
    started: set[Any] = field(default_factory=set)
    finished: list[Job] = field(default_factory=list)
    declined: list[Job] = field(default_factory=list)
    """Jobs a thread would not start: their lease ran out (a frozen process) or another worker has them."""
    lease_from: dict[int, float] = field(default_factory=dict)
    """Monotonic time each held job's lease was last known renewed (by the claim or the heartbeat).

    Keyed by ``job.id.int``, as is ``not_ours``: hashing a UUID runs Python code, on every job."""
    not_ours: set[int] = field(default_factory=set)


class ExecutorPool:
    """``threads`` executor threads fed from one queue; see the module doc for who owns what."""

    def __init__(
        self,
        executor: Executor,
        threads: int,
        lease_seconds: float,
        start_log: StartLog,
        poke: Callable[[], None],
        wants_more: Callable[[int], bool],
    ) -> None:
        self.executor = executor
        self.threads = threads
        self.lease_seconds = lease_seconds
        self.start_log = start_log
        self.poke = poke
        """Wakes the main loop."""
        self.wants_more = wants_more
        """Given the jobs still queued here, whether the main loop should claim more."""
        self.lock = threading.Lock()
        self._shared = _Shared()
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._slot = threading.local()

    # The main thread's side.

    def start(self) -> None:
        for n in range(self.threads):
            thread = threading.Thread(target=self._serve, args=(n,), name=f"bourbon-exec-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Let every thread end once it has finished its current job."""
        for _ in self._threads:
            self._queue.put(None)

    def queued(self) -> int:
        """Jobs handed over that no thread has taken yet."""
        return self._queue.qsize()

    def idle_threads(self) -> int:
        """Threads free for another job: those not running one, less the jobs waiting for a thread."""
        with self.lock:
            return max(self.threads - (len(self._shared.held) - len(self._shared.finished)), 0)

    def busy(self) -> bool:
        """True while the process holds any job."""
        return bool(self._shared.held)

    def hand_over(self, jobs: Iterable[Job], claimed_at: float) -> None:
        """Queue claimed jobs for the threads; their leases count from ``claimed_at``."""
        with self.lock:
            for job in jobs:
                self._shared.held[job.pk] = job
                self._shared.lease_from[job.id.int] = claimed_at
                self._queue.put(job)

    def take_finished(self) -> list[Job]:
        with self.lock:
            done, self._shared.finished = self._shared.finished, []
        return done

    def put_back_finished(self, jobs: list[Job]) -> None:
        """Outcomes that were not written: they go first in the next batch."""
        with self.lock:
            self._shared.finished[:0] = jobs

    def add_finished(self, job: Job) -> None:
        with self.lock:
            self._shared.finished.append(job)

    def forget(self, jobs: Collection[Job]) -> None:
        """The process no longer holds these jobs (settled, handed back, or given up)."""
        with self.lock:
            for job in jobs:
                self._shared.started.discard(job.pk)
                self._shared.held.pop(job.pk, None)
                self._shared.lease_from.pop(job.id.int, None)
        for job in jobs:
            self.start_log.forget(job.id)

    def take_declined(self) -> list[Job]:
        with self.lock:
            declined, self._shared.declined = self._shared.declined, []
        return declined

    def take_unstarted(self) -> list[Job]:
        """Empty the queue: the jobs no thread has taken yet."""
        unstarted: list[Job] = []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return unstarted
            if job is not None:
                unstarted.append(job)

    def started_ids(self) -> list[Any]:
        """Held jobs whose code has started."""
        with self.lock:
            return list(self._shared.started)

    def running_jobs(self) -> list[Job]:
        """Held jobs whose code started and has no outcome yet."""
        with self.lock:
            return [
                job
                for pk, job in self._shared.held.items()
                if pk in self._shared.started and job.status == JobStatus.RUNNING
            ]

    def renewed(self, renewed: set[Any], renewed_at: float) -> None:
        """Leases renewed now count from ``renewed_at``; held jobs the heartbeat did not find are not ours."""
        keys = {pk.int for pk in renewed}
        with self.lock:
            for key in keys:
                self._shared.lease_from[key] = renewed_at
            self._shared.not_ours = {pk.int for pk in self._shared.held} - keys

    # The executor threads' side.

    def _serve(self, slot: int) -> None:
        self._slot.number = slot
        while (job := self._queue.get()) is not None:
            if not self._begin(job):
                self.poke()
                continue
            began = time.monotonic()
            self._run_between_connection_checks(job)
            self.start_log.mark_returned(job.id)
            with self.lock:
                self._shared.finished.append(job)
                backlog = len(self._shared.finished)
            if self._main_loop_needed(backlog, time.monotonic() - began):
                self.poke()
        connections.close_all()

    def note_start(self, job: Job) -> None:
        """Only now, with the task loaded and ``task_started`` sent, is a death of the process the job's."""
        self.start_log.record(self._slot.number, job.id)

    def _begin(self, job: Job) -> bool:
        """Mark ``job`` started, unless its lease ran out (a frozen process) or it was rescued meanwhile."""
        key = job.id.int
        with self.lock:
            shared = self._shared
            if (
                key in shared.not_ours
                or time.monotonic() >= shared.lease_from.get(key, 0.0) + self.lease_seconds
            ):
                shared.declined.append(job)
                return False
            shared.started.add(job.pk)
        return True

    def _run_between_connection_checks(self, job: Job) -> None:
        try:
            db_connections.before_job()
            self.executor.run(job)
        except TimeoutInterrupt:
            pass  # a deadline hit in the instant between the job's return and its bookkeeping
        finally:
            try:
                db_connections.after_job()
            except DatabaseError as exc:
                logger.warning(
                    "worker %s: closing a job's connection failed: %s", self.executor.worker_id, exc
                )

    def _main_loop_needed(self, finished: int, ran_for: float) -> bool:
        """Wake the main loop to refill the queue, or to write outcomes once enough are waiting.

        Not after every job: a batch of quick jobs is then written in one
        statement instead of one each. A job that ran for a while is written
        at once, so its result does not wait for the rest of the batch.
        """
        return self.wants_more(self._queue.qsize()) or finished >= FLUSH_AT or ran_for >= PROMPT_AFTER
