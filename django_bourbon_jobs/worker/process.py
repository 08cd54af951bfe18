"""One worker process: claim batches, feed executor threads, write outcomes in batches.

The main thread owns every database write of the worker (claim, outcomes,
heartbeat, release); executor threads only run jobs. Tests drive it directly:
``WorkerProcess(WorkerConfig(burst=True)).run()`` drains what is due and returns.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, close_old_connections, connections
from django.utils import timezone
from django.utils.crypto import get_random_string

from django_bourbon_jobs import fastpath
from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.exceptions import JobTimeout
from django_bourbon_jobs.models import Job, JobStatus, Worker
from django_bourbon_jobs.results import load_task
from django_bourbon_jobs.worker import claiming, outcomes
from django_bourbon_jobs.worker.announce import announce_outcome
from django_bourbon_jobs.worker.executor import Executor, TimeoutInterrupt, TimeoutWatch
from django_bourbon_jobs.worker.maintenance import announce_settled, settle_lost_attempts
from django_bourbon_jobs.worker.wakeup import Wakeup, wakeup_for

logger = logging.getLogger("django_bourbon_jobs.worker")

EXIT_OK = 0
EXIT_RECYCLE = 75
"""Exit code after ``max_jobs``: the supervisor starts a fresh process, in burst mode too."""
EXIT_STUCK_JOB = 70
FLUSH_AT = 32
"""Finished attempts that wake the main loop to write them, whatever else is queued."""
PROMPT_AFTER = 0.005
"""Seconds a job runs before its outcome is written without waiting for the batch."""
CANCEL_CHECK_SECONDS = 0.5
"""How often a worker with running jobs looks for cancel requests."""


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{get_random_string(6)}"


@dataclass
class WorkerConfig:
    queues: frozenset[str] = frozenset()
    """Queue names to claim from; empty means every queue."""
    threads: int = 1
    burst: bool = False
    """Drain what is due, then return."""
    max_jobs: int | None = None
    """Return after this many jobs (the supervisor then starts a fresh process)."""
    shutdown_grace: float | None = None
    batch_size: int | None = None
    poll_interval: float | None = None
    using: str = "default"
    worker_id: str = field(default_factory=new_worker_id)

    def __post_init__(self) -> None:
        conf = get_settings()
        if self.shutdown_grace is None:
            self.shutdown_grace = conf.SHUTDOWN_GRACE
        if self.batch_size is None:
            self.batch_size = conf.BATCH_SIZE
        if self.poll_interval is None:
            self.poll_interval = conf.POLL_INTERVAL


class WorkerProcess:
    def __init__(self, config: WorkerConfig, now: Callable[[], datetime] = timezone.now) -> None:
        conf = get_settings()
        self.config = config
        self.now = now
        self.lease = timedelta(seconds=conf.LEASE_SECONDS)
        self.heartbeat_every = conf.HEARTBEAT_SECONDS
        self.wakeup: Wakeup = wakeup_for(config.using, config.queues)
        self.watch = TimeoutWatch(grace=conf.TIMEOUT_GRACE, on_watch=self._wake_for_deadline)
        self._wake_by = 0.0
        self.executor = Executor(config.worker_id, self.watch, now)
        self.pending: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.in_flight: dict[Any, Job] = {}
        self.started: set[Any] = set()
        self.finished: list[Job] = []
        self.lock = threading.Lock()
        self.stop_requested = threading.Event()
        self.jobs_done = 0
        self.claimed_total = 0
        self._next_heartbeat = 0.0
        self._claim_size = config.threads
        self._refill_below = config.threads
        self._next_cancel_check = 0.0
        self._threads: list[threading.Thread] = []

    @property
    def worker_id(self) -> str:
        return self.config.worker_id

    @property
    def jobs(self) -> Any:
        return Job.objects.db_manager(self.config.using)

    def request_stop(self, *_: Any) -> None:
        self.stop_requested.set()
        self.wakeup.poke()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> int:
        self._start()
        try:
            while not self.stop_requested.is_set() and not self._reached_max_jobs():
                worked = self._guarded(self.run_once)
                if worked is None:
                    continue
                if not worked and self.config.burst and not self.in_flight:
                    break
                if not worked:
                    self._sleep()
        finally:
            code = self._shutdown()
        return code

    def run_once(self) -> bool:
        """One turn of the loop; true if it claimed or finished anything."""
        flushed = self.flush()
        self._heartbeat_if_due()
        self._relay_cancel_requests_if_due()
        stuck = self.watch.enforce()
        if stuck:
            self._abandon(stuck)
        return bool(flushed or self._claim_if_room())

    def _guarded(self, step: Callable[[], bool]) -> bool | None:
        """Run a step; on a database error log it, drop the connection and back off."""
        try:
            return step()
        except DatabaseError as exc:
            logger.warning("database error in worker %s: %s; retrying", self.worker_id, exc)
            connections[self.config.using].close()
            self.stop_requested.wait(min(self.config.poll_interval or 1.0, 1.0))
            return None

    def _register(self, now: datetime) -> None:
        """Create (or, after a prune, re-create) this process's ``Worker`` row."""
        Worker.objects.db_manager(self.config.using).update_or_create(
            pk=self.worker_id,
            defaults={
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "queues": sorted(self.config.queues),
                "threads": self.config.threads,
                "started_at": now,
                "last_heartbeat_at": now,
            },
        )

    def _start(self) -> None:
        self._register(self.now())
        self._next_heartbeat = time.monotonic() + self.heartbeat_every
        self.wakeup.start()
        for n in range(self.config.threads):
            thread = threading.Thread(target=self._execute_forever, name=f"bourbon-exec-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _execute_forever(self) -> None:
        while (job := self.pending.get()) is not None:
            with self.lock:
                self.started.add(job.pk)
            began = time.monotonic()
            try:
                self.executor.run(job)
            except TimeoutInterrupt:
                pass  # a deadline hit in the instant between the job's return and its bookkeeping
            with self.lock:
                self.finished.append(job)
                backlog = len(self.finished)
            if self._main_loop_needed(backlog, time.monotonic() - began):
                self.wakeup.poke()
        close_old_connections()

    def _main_loop_needed(self, finished: int, ran_for: float) -> bool:
        """Wake the main loop to refill the queue, or to write outcomes once enough are waiting.

        Not after every job: a batch of quick jobs is then written in one
        statement instead of one each. A job that ran for a while is written
        at once, so its result does not wait for the rest of the batch.
        """
        return self.pending.qsize() < self._refill_below or finished >= FLUSH_AT or ran_for >= PROMPT_AFTER

    def _sleep(self) -> None:
        """Wait for a poke, a deadline, a heartbeat or the poll interval, whichever is first."""
        self._wake_by = float("inf")  # a deadline set while the timeout is computed must poke
        timeout = self._idle_timeout()
        self._wake_by = time.monotonic() + timeout
        self.wakeup.wait(timeout)
        self._wake_by = 0.0

    def _wake_for_deadline(self, deadline: float) -> None:
        """Poke the loop only if it sleeps past ``deadline``; a busy loop enforces it anyway."""
        if deadline < self._wake_by:
            self.wakeup.poke()

    def _reached_max_jobs(self) -> bool:
        return self.config.max_jobs is not None and self.jobs_done >= self.config.max_jobs

    def _idle_timeout(self) -> float:
        timeout = self.config.poll_interval or 1.0
        deadline = self.watch.next_deadline()
        if deadline is not None:
            timeout = min(timeout, max(deadline - time.monotonic(), 0.0) + 0.01)
        return min(timeout, max(self._next_heartbeat - time.monotonic(), 0.0) + 0.01)

    def _claim_if_room(self) -> int:
        if self.stop_requested.is_set() or self.pending.qsize() >= self._refill_below:
            return 0
        limit = self._claim_size
        if self.config.max_jobs is not None:
            limit = min(limit, self.config.max_jobs - self.claimed_total)
        if limit <= 0:
            return 0
        now = self.now()
        jobs = claiming.claim(
            using=self.config.using,
            worker_id=self.worker_id,
            queues=self.config.queues,
            limit=limit,
            now=now,
            lease_until=now + self.lease,
        )
        self.claimed_total += len(jobs)
        self._adapt_claim_size(len(jobs), limit)
        for job in jobs:
            self.in_flight[job.pk] = job
            self.pending.put(job)
        # After the hand-over: the publisher thread then competes with jobs already started.
        fastpath.publish_job_events(jobs)
        return len(jobs)

    def _adapt_claim_size(self, claimed: int, asked: int) -> None:
        """Claim one job per thread while the queue is short, a full batch while it is deep.

        A process holding a prefetched batch makes other idle processes wait, and
        a claimed job's attempt counts even before it starts; both only pay off
        under a backlog, which a full claim signals.
        """
        batch = self.config.batch_size or 1
        self._claim_size = min(batch, asked * 2) if claimed == asked else self.config.threads
        # Under a backlog, claim the next batch while half of this one is still queued,
        # so the executor threads never wait on the claim's round trip.
        self._refill_below = max(self.config.threads, self._claim_size // 2)

    def flush(self) -> int:
        """Write finished attempts in one statement, then announce them."""
        with self.lock:
            done = list(self.finished)
        if not done:
            return 0
        outcomes.record(self.config.using, self.worker_id, done)
        with self.lock:
            del self.finished[: len(done)]
            for job in done:
                self.started.discard(job.pk)
                self.in_flight.pop(job.pk, None)
        self.jobs_done += len(done)
        fastpath.publish_job_events(done)
        for job in done:
            announce_outcome(job, started=self.executor.started.pop(job.pk, None))
        return len(done)

    def _heartbeat_if_due(self) -> None:
        if time.monotonic() < self._next_heartbeat:
            return
        now = self.now()
        self.jobs.extend_leases(self.worker_id, now + self.lease)
        updated = (
            Worker.objects.db_manager(self.config.using)
            .filter(pk=self.worker_id)
            .update(last_heartbeat_at=now)
        )
        if not updated:
            logger.warning("worker %s row was pruned; re-registering", self.worker_id)
            self._register(now)
        self._next_heartbeat = time.monotonic() + self.heartbeat_every

    def _relay_cancel_requests_if_due(self) -> None:
        """Pass cancel requests for running jobs to them (one indexed query, only while jobs run)."""
        if not self.started or time.monotonic() < self._next_cancel_check:
            return
        self._next_cancel_check = time.monotonic() + CANCEL_CHECK_SECONDS
        with self.lock:
            running = list(self.started)
        requested = self.jobs.held_by(self.worker_id).filter(
            pk__in=running, cancel_requested_at__isnull=False
        )
        for pk in requested.values_list("pk", flat=True):
            flag = self.executor.cancel_flags.get(pk)
            if flag is not None and not flag.is_set():
                flag.set()
                self.watch.stop_soon(pk)

    def _release_unstarted(self) -> int:
        """Put back jobs claimed but not yet handed to a thread."""
        unstarted = []
        while True:
            try:
                job = self.pending.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                unstarted.append(job)
        for job in unstarted:
            self.in_flight.pop(job.pk, None)
        if unstarted:
            self.jobs.release(self.worker_id, [job.pk for job in unstarted])
            fastpath.publish_job_changes([job.pk for job in unstarted], self.config.using)
        return len(unstarted)

    def _settle_running(self, reason: str) -> None:
        """Requeue (or fail, with no attempts left) jobs still running when the process must go."""
        now = self.now()
        with self.lock:
            running = [
                job
                for pk, job in self.in_flight.items()
                if pk in self.started and job.status == JobStatus.RUNNING
            ]
        announce_settled(settle_lost_attempts(running, self.config.using, now, reason))

    def _abandon(self, stuck: list[Any]) -> None:
        """A job ignored its timeout interrupt: record it, hand back the rest, exit for a fresh process."""
        for entry in stuck:
            if entry.cancelling:
                entry.job.mark_cancelled(self.now())
            else:
                self.executor.record_failure(entry.job, load_task(entry.job.task_path), _stuck_timeout(entry))
            with self.lock:
                self.finished.append(entry.job)
        self.flush()
        self._release_unstarted()
        self._settle_running("The worker process was replaced after a job ignored its timeout.")
        logger.error("worker %s replaced: a job ignored its timeout", self.worker_id)
        os._exit(EXIT_STUCK_JOB)

    def _shutdown(self) -> int:
        """Stop claiming, hand back unstarted jobs, let running ones finish within the grace period."""
        self._guarded(lambda: bool(self._release_unstarted()))
        deadline = time.monotonic() + (self.config.shutdown_grace or 0.0)
        while self.in_flight and time.monotonic() < deadline:
            self._guarded(lambda: bool(self.flush()))
            if self.in_flight:
                self.wakeup.wait(min(0.05, max(deadline - time.monotonic(), 0.0)))
        self._guarded(lambda: bool(self.flush()))
        if self.in_flight:
            self._settle_running(
                "The worker stopped before the attempt finished (shutdown grace period over)."
            )
        for _ in self._threads:
            self.pending.put(None)
        self.wakeup.stop()
        Worker.objects.db_manager(self.config.using).filter(pk=self.worker_id).delete()
        return EXIT_RECYCLE if self._reached_max_jobs() and not self.stop_requested.is_set() else EXIT_OK


def _stuck_timeout(entry: Any) -> BaseException:
    return JobTimeout(f"Exceeded its timeout of {entry.timeout:g}s and ignored the interrupt.")
