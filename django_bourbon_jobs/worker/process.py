"""One worker process: a main loop over small units, and an executor pool that runs the jobs.

The main thread makes every database write of the worker's own, one unit at a
time (:meth:`WorkerProcess.run_once`): write finished outcomes
(:class:`~.outcome_writer.OutcomeWriter`), renew leases
(:class:`~.duties.Heartbeat`), relay cancel requests (:class:`~.duties.CancelRelay`),
interrupt overrunning jobs (:class:`~.duties.TimeoutEnforcer`), hand back jobs a
thread declined, decide whether to retire (:class:`~.duties.Retirement`), and
claim (:class:`~.claimer.Claimer`). The executor threads and the state they share
with the main thread live in :class:`~.pool.ExecutorPool`. Tests drive it
directly: ``WorkerProcess(WorkerConfig(burst=True)).run()`` drains what is due
and returns.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, connections
from django.utils import timezone
from django.utils.crypto import get_random_string

from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.exceptions import JobTimeout
from django_bourbon_jobs.models import Job, Worker
from django_bourbon_jobs.results import load_task
from django_bourbon_jobs.store import for_connection
from django_bourbon_jobs.worker.claim_sizer import ClaimSizer
from django_bourbon_jobs.worker.claimer import Claimer
from django_bourbon_jobs.worker.duties import CancelRelay, Heartbeat, Retirement, TimeoutEnforcer
from django_bourbon_jobs.worker.executor import Executor, TimeoutWatch, Watched
from django_bourbon_jobs.worker.lifeline import MemoryWatch, ParentWatch
from django_bourbon_jobs.worker.limit_watch import LimitWatch
from django_bourbon_jobs.worker.maintenance import announce_settled, hand_back, settle_lost_attempts
from django_bourbon_jobs.worker.outcome_writer import OUTCOME_TRIES, OutcomeWriter
from django_bourbon_jobs.worker.pool import ExecutorPool
from django_bourbon_jobs.worker.startlog import StartLog
from django_bourbon_jobs.worker.wakeup import Wakeup, wakeup_for

__all__ = ["EXIT_OK", "EXIT_RECYCLE", "EXIT_STUCK_JOB", "OUTCOME_TRIES", "WorkerConfig", "WorkerProcess"]

logger = logging.getLogger("django_bourbon_jobs.worker")

EXIT_OK = 0
EXIT_RECYCLE = 75
"""Exit code after ``max_jobs``: the supervisor starts a fresh process, in burst mode too."""
EXIT_STUCK_JOB = 70


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
    max_memory_mb: int | None = None
    """Retire the process once its resident memory passes this, after its current jobs."""
    parent_pid: int | None = None
    """The supervisor's pid: the process stops if its parent changes (the supervisor died)."""
    start_log: StartLog | None = None
    """Shared with the supervisor, which reads it if the process dies (see ``startlog``)."""

    def __post_init__(self) -> None:
        conf = get_settings()
        if self.shutdown_grace is None:
            self.shutdown_grace = conf.SHUTDOWN_GRACE
        if self.batch_size is None:
            self.batch_size = conf.BATCH_SIZE
        if self.poll_interval is None:
            self.poll_interval = conf.POLL_INTERVAL
        if self.start_log is None:
            self.start_log = StartLog(self.threads, self.batch_size or 1)


class WorkerProcess:
    def __init__(self, config: WorkerConfig, now: Callable[[], datetime] = timezone.now) -> None:
        conf = get_settings()
        self.config = config
        self.now = now
        self.store = for_connection(config.using)
        lease = timedelta(seconds=conf.LEASE_SECONDS)
        self.stop_requested = threading.Event()
        self.wakeup: Wakeup = wakeup_for(config.using, config.queues)
        self.watch = TimeoutWatch(grace=conf.TIMEOUT_GRACE, on_watch=self._wake_for_deadline)
        self._wake_by = 0.0
        self.start_log: StartLog = config.start_log  # type: ignore[assignment]  # set by WorkerConfig
        self.executor = Executor(config.worker_id, self.watch, now)
        sizer = ClaimSizer(config.threads, config.batch_size or 1)
        self.pool = ExecutorPool(
            self.executor, config.threads, conf.LEASE_SECONDS, self.start_log, self.wakeup.poke, sizer.room
        )
        self.executor.on_start = self.pool.note_start
        self.parent = ParentWatch(config.parent_pid)
        self._database_down = False
        common: dict[str, Any] = {"store": self.store, "using": config.using, "worker_id": self.worker_id}
        self.outcomes = OutcomeWriter(**common, pool=self.pool, now=now)
        self.heartbeat = Heartbeat(
            **common,
            every=conf.HEARTBEAT_SECONDS,
            lease=lease,
            now=now,
            pool=self.pool,
            register=self._register,
        )
        self.cancel_relay = CancelRelay(config.using, self.worker_id, self.executor, self.watch, self.pool)
        self.timeouts = TimeoutEnforcer(self.watch, self._abandon)
        self.retirement = Retirement(
            self.worker_id,
            self.parent,
            MemoryWatch(config.max_memory_mb, self.start_log),
            config.max_memory_mb,
        )
        self.claimer = Claimer(
            **common,
            queues=config.queues,
            pool=self.pool,
            sizer=sizer,
            lease=lease,
            now=now,
            stopping=self.stop_requested,
            max_jobs=config.max_jobs,
            limits=LimitWatch(self.store, config.using, config.queues),
        )

    @property
    def worker_id(self) -> str:
        return self.config.worker_id

    @property
    def jobs_done(self) -> int:
        return self.outcomes.written

    @property
    def retiring(self) -> str:
        """Why the process is stopping of its own accord (memory, a dead supervisor); empty if not."""
        return self.retirement.reason

    def request_stop(self, *_: Any) -> None:
        self.stop_requested.set()
        self.wakeup.poke()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> int:
        self._start()
        try:
            while not self.stop_requested.is_set() and not self._reached_max_jobs() and not self.retiring:
                worked = self._guarded(self.run_once)
                if worked is None:
                    continue
                if not worked and self.config.burst and not self.pool.busy() and self._limit_opens() is None:
                    break
                if not worked:
                    self._sleep()
        finally:
            code = self._shutdown()
        return code

    def run_once(self) -> bool:
        """One turn of the loop; true if it claimed or finished anything."""
        written = self.outcomes.run_once()
        self.heartbeat.run_once()
        self.cancel_relay.run_once()
        self.timeouts.run_once()
        self._hand_back_declined()
        self.retirement.run_once()
        return bool(written or self.claimer.run_once())

    def _guarded(self, step: Callable[[], Any]) -> Any | None:
        """Run a step; on a database error log it (once per outage), drop the connection and back off."""
        try:
            worked = step()
        except DatabaseError as exc:
            level = logging.DEBUG if self._database_down else logging.WARNING
            logger.log(level, "database error in worker %s: %s; retrying", self.worker_id, exc)
            self._database_down = True
            connections[self.config.using].close()
            self.stop_requested.wait(min(self.config.poll_interval or 1.0, 1.0))
            return None
        if self._database_down:
            self._database_down = False
            logger.warning("worker %s: the database answers again", self.worker_id)
        return worked

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
        self.heartbeat.start()
        self.wakeup.start()
        self.pool.start()

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

    def _limit_opens(self) -> float | None:
        """Seconds until a rate window or a circuit lets a waiting job start (burst mode waits for it)."""
        return self.claimer.limits.seconds_to_opening() if self.claimer.limits else None

    def _idle_timeout(self) -> float:
        timeout = self.config.poll_interval or 1.0
        opening = self._limit_opens()
        if opening is not None:
            timeout = min(timeout, opening + 0.001)
        deadline = self.watch.next_deadline()
        if deadline is not None:
            timeout = min(timeout, max(deadline - time.monotonic(), 0.0) + 0.01)
        return min(timeout, max(self.heartbeat.next_at - time.monotonic(), 0.0) + 0.01)

    def _hand_back_declined(self) -> None:
        """Prefetched jobs a thread declined (lease ran out, or rescued): hand back those still held."""
        declined = self.pool.take_declined()
        if not declined:
            return
        released = self._hand_back(declined)
        logger.warning(
            "worker %s: %d prefetched job(s) not started: their lease ran out or they were rescued "
            "(%d handed back)",
            self.worker_id,
            len(declined),
            released,
        )

    def _hand_back(self, jobs: list[Job]) -> int:
        """Forget jobs this process will not start; those it still holds go back to the queue, uncharged."""
        self.pool.forget(jobs)
        return hand_back(self.store, self.worker_id, [job.pk for job in jobs], self.config.using)

    def _settle_running(self, reason: str) -> None:
        """Requeue (or fail, with no attempts left) jobs still running when the process must go."""
        running = self.pool.running_jobs()
        announce_settled(settle_lost_attempts(running, self.config.using, self.now(), reason))

    def _abandon(self, stuck: list[Watched]) -> None:
        """A job ignored its timeout interrupt: record it, hand back the rest, exit for a fresh process."""
        for entry in stuck:
            if entry.cancelling:
                entry.job.mark_cancelled(self.now())
            else:
                self.executor.record_failure(entry.job, load_task(entry.job.task_path), _stuck_timeout(entry))
            self.pool.add_finished(entry.job)
        self.outcomes.run_once()
        self._hand_back(self.pool.take_unstarted())
        self._settle_running("The worker process was replaced after a job ignored its timeout.")
        logger.error("worker %s replaced: a job ignored its timeout", self.worker_id)
        os._exit(EXIT_STUCK_JOB)

    def _shutdown(self) -> int:
        """Stop claiming, hand back unstarted jobs, let running ones finish within the grace period."""
        self._guarded(lambda: self._hand_back(self.pool.take_unstarted()))
        deadline = time.monotonic() + (self.config.shutdown_grace or 0.0)
        while self.pool.busy() and time.monotonic() < deadline:
            self._guarded(self.outcomes.run_once)
            self._guarded(self.heartbeat.run_once)
            if self.pool.busy():
                self.wakeup.wait(min(0.05, max(deadline - time.monotonic(), 0.0)))
        self._guarded(self.outcomes.run_once)
        if self.pool.busy():
            because = f" ({self.retiring})" if self.retiring else ""
            self._settle_running(
                f"The worker stopped{because} before the attempt finished (shutdown grace period over)."
            )
        self.pool.stop()
        self.wakeup.stop()
        self._guarded(
            lambda: bool(Worker.objects.db_manager(self.config.using).filter(pk=self.worker_id).delete())
        )
        recycle = self._reached_max_jobs() or (self.retiring and not self.parent.parent_gone())
        return EXIT_RECYCLE if recycle and not self.stop_requested.is_set() else EXIT_OK


def _stuck_timeout(entry: Watched) -> BaseException:
    return JobTimeout(f"Exceeded its timeout of {entry.timeout:g}s and ignored the interrupt.")
