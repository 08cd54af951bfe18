"""One worker process: claim batches, feed executor threads, write outcomes in batches.

The main thread makes every database write of the worker's own (claim,
outcomes, heartbeat, release); executor threads run jobs, whose code (and
progress reports) use connections of their own, handled around each job as
Django handles them around a request (:mod:`.db_connections`). Tests drive it
directly: ``WorkerProcess(WorkerConfig(burst=True)).run()`` drains what is due
and returns.
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

from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.utils import timezone
from django.utils.crypto import get_random_string

from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.events import publish
from django_bourbon_jobs.exceptions import JobTimeout, OutcomeNotStored
from django_bourbon_jobs.models import Job, JobStatus, Worker
from django_bourbon_jobs.results import load_task
from django_bourbon_jobs.serialization import error_record, storable
from django_bourbon_jobs.worker import claiming, db_connections, outcomes
from django_bourbon_jobs.worker.announce import announce_outcome
from django_bourbon_jobs.worker.claim_sizer import ClaimSizer
from django_bourbon_jobs.worker.duties import CancelRelay, Heartbeat
from django_bourbon_jobs.worker.executor import Executor, TimeoutInterrupt, TimeoutWatch
from django_bourbon_jobs.worker.lifeline import MemoryWatch, ParentWatch
from django_bourbon_jobs.worker.maintenance import announce_settled, hand_back, settle_lost_attempts
from django_bourbon_jobs.worker.startlog import StartLog
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
"""How often a worker with running jobs looks for cancel requests."""
OUTCOME_TRIES = 3
"""Writes of one job's outcome that may fail (the rest of its batch written) before it is given up."""
TRANSIENT_ERRORS = (OperationalError, InterfaceError)
"""Errors of the connection, not of a row: the whole write is tried again once the database answers."""


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
        self.lease = timedelta(seconds=conf.LEASE_SECONDS)
        self.lease_seconds = conf.LEASE_SECONDS
        self.heartbeat_every = conf.HEARTBEAT_SECONDS
        self.wakeup: Wakeup = wakeup_for(config.using, config.queues)
        self.watch = TimeoutWatch(grace=conf.TIMEOUT_GRACE, on_watch=self._wake_for_deadline)
        self._wake_by = 0.0
        self.executor = Executor(config.worker_id, self.watch, now, on_start=self._log_start)
        self._thread_slot = threading.local()
        self.pending: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.in_flight: dict[Any, Job] = {}
        self.started: set[Any] = set()
        self.finished: list[Job] = []
        self.lock = threading.Lock()
        self.stop_requested = threading.Event()
        self.jobs_done = 0
        self.claimed_total = 0
        self.claim_sizer = ClaimSizer(config.threads, config.batch_size or 1)
        self._threads: list[threading.Thread] = []
        self.start_log: StartLog = config.start_log  # type: ignore[assignment]  # set by WorkerConfig
        self.parent = ParentWatch(config.parent_pid)
        self.memory = MemoryWatch(config.max_memory_mb, self.start_log)
        self.retiring = ""
        """Why the process is stopping of its own accord (memory, a dead supervisor); empty if not."""
        self.lease_from: dict[int, float] = {}
        """Monotonic time each held job's lease was last known to be renewed (claim, heartbeat).

        Keyed by ``job.id.int``, as is ``not_ours``: hashing a UUID runs Python code, on every job."""
        self.stale: list[Job] = []
        """Jobs an executor thread declined to start: their lease ran out or another worker has them."""
        self.not_ours: set[int] = set()
        self.write_failures: dict[Any, int] = {}
        self._database_down = False
        self.heartbeat = Heartbeat(
            using=config.using,
            worker_id=config.worker_id,
            every=self.heartbeat_every,
            lease=self.lease,
            now=now,
            started=self._started_jobs,
            renewed=self._note_renewal,
            register=self._register,
        )
        self.cancel_relay = CancelRelay(
            config.using, config.worker_id, self.executor, self.watch, self._started_jobs
        )

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
            while not self.stop_requested.is_set() and not self._reached_max_jobs() and not self.retiring:
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
        self.heartbeat.run_once()
        self.cancel_relay.run_once()
        stuck = self.watch.enforce()
        if stuck:
            self._abandon(stuck)
        self._release_stale()
        self._retire_if_due()
        return bool(flushed or self._claim_if_room())

    def _retire_if_due(self) -> None:
        """Stop claiming when the supervisor is gone or memory is over ``--max-memory``."""
        if self.retiring:
            return
        if self.parent.parent_gone():
            self.retiring = "its supervisor died"
            logger.warning("worker %s: %s; stopping", self.worker_id, self.retiring)
        elif self.memory.run_once():
            self.retiring = (
                f"its memory ({self.memory.rss / 2**20:.0f} MB) passed --max-memory "
                f"({self.config.max_memory_mb} MB)"
            )
            logger.warning(
                "worker %s: %s; replacing it after its current jobs", self.worker_id, self.retiring
            )

    def _guarded(self, step: Callable[[], bool]) -> bool | None:
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
        for n in range(self.config.threads):
            thread = threading.Thread(
                target=self._execute_forever, args=(n,), name=f"bourbon-exec-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _execute_forever(self, thread: int) -> None:
        self._thread_slot.number = thread
        while (job := self.pending.get()) is not None:
            if not self._still_ours(job):
                with self.lock:
                    self.stale.append(job)
                self.wakeup.poke()
                continue
            with self.lock:
                self.started.add(job.pk)
            began = time.monotonic()
            self._run_between_connection_checks(job)
            self.start_log.mark_returned(job.id)
            with self.lock:
                self.finished.append(job)
                backlog = len(self.finished)
            if self._main_loop_needed(backlog, time.monotonic() - began):
                self.wakeup.poke()
        connections.close_all()

    def _log_start(self, job: Job) -> None:
        """Only now, with the task loaded and ``task_started`` sent, is a death of the process the job's."""
        self.start_log.record(self._thread_slot.number, job.id)

    def _still_ours(self, job: Job) -> bool:
        """False for a prefetched job whose lease ran out (a frozen process) or that was rescued."""
        key = job.id.int
        if self.not_ours and key in self.not_ours:
            return False
        return time.monotonic() < self.lease_from.get(key, 0.0) + self.lease_seconds

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
                logger.warning("worker %s: closing a job's connection failed: %s", self.worker_id, exc)

    def _main_loop_needed(self, finished: int, ran_for: float) -> bool:
        """Wake the main loop to refill the queue, or to write outcomes once enough are waiting.

        Not after every job: a batch of quick jobs is then written in one
        statement instead of one each. A job that ran for a while is written
        at once, so its result does not wait for the rest of the batch.
        """
        return self.claim_sizer.room(self.pending.qsize()) or finished >= FLUSH_AT or ran_for >= PROMPT_AFTER

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
        return min(timeout, max(self.heartbeat.next_at - time.monotonic(), 0.0) + 0.01)

    def _claim_if_room(self) -> int:
        if self.stop_requested.is_set() or not self.claim_sizer.room(self.pending.qsize()):
            return 0
        limit = self.claim_sizer.size
        if self.config.max_jobs is not None:
            limit = min(limit, self.config.max_jobs - self.claimed_total)
        if limit <= 0:
            return 0
        claimed_at = time.monotonic()
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
        self.claim_sizer.claimed(len(jobs), limit)
        for job in jobs:
            self.in_flight[job.pk] = job
            self.lease_from[job.id.int] = claimed_at
            self.pending.put(job)
        # After the hand-over: the publisher thread then competes with jobs already started.
        publish.publish_job_events(jobs)
        return len(jobs)

    def flush(self) -> int:
        """Write finished attempts in one statement, then announce them."""
        with self.lock:
            done, self.finished = self.finished, []
        if not done:
            return 0
        try:
            settled = self._store_outcomes(done)
        except BaseException:
            with self.lock:
                self.finished[:0] = done
            raise
        with self.lock:
            if len(settled) < len(done):
                self.finished[:0] = [job for job in done if job not in settled]
            for job in settled:
                self.started.discard(job.pk)
                self.in_flight.pop(job.pk, None)
        for job in settled:
            self.lease_from.pop(job.id.int, None)
            self.start_log.forget(job.id)
        if self.write_failures:
            for job in settled:
                self.write_failures.pop(job.id, None)
        self.jobs_done += len(settled)
        publish.publish_job_events(settled)
        for job in settled:
            announce_outcome(
                job,
                started=self.executor.started.pop(job.pk, None),
                exception=self.executor.raised.pop(job.pk, None),
            )
        return len(settled)

    def _store_outcomes(self, done: list[Job]) -> list[Job]:
        """Write the batch; if a row spoils it, write the others one by one.

        Returns the jobs settled (written, or given up). A connection error
        propagates: the whole batch is written again once the database answers.
        """
        refused = self._record(done)
        if refused is None:
            return done
        logger.warning(
            "worker %s: writing %d outcomes failed (%s); one by one", self.worker_id, len(done), refused
        )
        return [job for job in done if self._store_one(job)]

    def _record(self, jobs: list[Job]) -> Exception | None:
        """Write outcomes; the error if the database refused them (a connection error propagates)."""
        try:
            outcomes.record(self.config.using, self.worker_id, jobs)
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001  (a row the database refuses must not stop the worker)
            return exc
        return None

    def _store_one(self, job: Job) -> bool:
        """Write one outcome; after ``OUTCOME_TRIES`` failures, settle the job as failed instead."""
        refused = self._record([job])
        if refused is None:
            return True
        tries = self.write_failures[job.id] = self.write_failures.get(job.id, 0) + 1
        if tries < OUTCOME_TRIES:
            return False
        return self._give_up_outcome(job, refused)

    def _give_up_outcome(self, job: Job, exc: Exception) -> bool:
        """Replace an outcome the database keeps refusing with a failure that says why."""
        logger.error("worker %s: the outcome of job %s cannot be stored: %s", self.worker_id, job.pk, exc)
        now = self.now()
        failure = OutcomeNotStored(
            f"The attempt's outcome could not be stored ({type(exc).__name__}: {exc})."
        )
        self.executor.raised[job.pk] = failure
        error = error_record(failure, worker_id=self.worker_id, attempt=job.attempts, at=now)
        job.errors = storable(job.errors)
        job.return_value = None
        job.progress = None
        job.mark_failed(error, now)
        again = self._record([job])
        if again is not None:  # its lease will run out and the rescuer settles it
            logger.error("worker %s: giving up job %s to the rescuer: %s", self.worker_id, job.pk, again)
        return True

    def _started_jobs(self) -> list[Any]:
        with self.lock:
            return list(self.started)

    def _note_renewal(self, renewed: set[Any], renewed_at: float) -> None:
        """Leases renewed now count from ``renewed_at``; jobs the heartbeat did not find are not ours."""
        with self.lock:
            held = list(self.in_flight)
        renewed_keys = {pk.int for pk in renewed}
        for key in renewed_keys:
            self.lease_from[key] = renewed_at
        self.not_ours = {pk.int for pk in held} - renewed_keys

    def _release_stale(self) -> None:
        """Forget prefetched jobs an executor thread declined; hand back those still held, uncharged."""
        with self.lock:
            stale, self.stale = self.stale, []
        if not stale:
            return
        released = self._hand_back(stale)
        logger.warning(
            "worker %s: %d prefetched job(s) not started: their lease ran out or they were rescued "
            "(%d handed back)",
            self.worker_id,
            len(stale),
            released,
        )

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
        self._hand_back(unstarted)
        return len(unstarted)

    def _hand_back(self, jobs: list[Job]) -> int:
        """Forget jobs this process will not start; those it still holds go back to the queue, uncharged."""
        for job in jobs:
            self.in_flight.pop(job.pk, None)
            self.lease_from.pop(job.id.int, None)
        return hand_back(self.worker_id, [job.pk for job in jobs], self.config.using)

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
            self._guarded(self.heartbeat.run_once)
            if self.in_flight:
                self.wakeup.wait(min(0.05, max(deadline - time.monotonic(), 0.0)))
        self._guarded(lambda: bool(self.flush()))
        if self.in_flight:
            because = f" ({self.retiring})" if self.retiring else ""
            self._settle_running(
                f"The worker stopped{because} before the attempt finished (shutdown grace period over)."
            )
        for _ in self._threads:
            self.pending.put(None)
        self.wakeup.stop()
        self._guarded(
            lambda: bool(Worker.objects.db_manager(self.config.using).filter(pk=self.worker_id).delete())
        )
        recycle = self._reached_max_jobs() or (self.retiring and not self.parent.parent_gone())
        return EXIT_RECYCLE if recycle and not self.stop_requested.is_set() else EXIT_OK


def _stuck_timeout(entry: Any) -> BaseException:
    return JobTimeout(f"Exceeded its timeout of {entry.timeout:g}s and ignored the interrupt.")
