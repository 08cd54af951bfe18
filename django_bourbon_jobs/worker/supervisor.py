"""The ``runworkers`` supervisor: start N worker processes, replace dead ones, stop gracefully.

Children are forked after Django is set up (connections closed first), so they
start in milliseconds. When a child dies, the jobs it held are settled at once
rather than after their lease: the supervisor knows that worker is gone, and
from the child's start log (:mod:`.startlog`) which of its jobs had started.
Those are charged and told how the process ended (:mod:`.exits`); the others go
back to the queue as if never claimed. A child stops by itself if its
supervisor dies (:mod:`.lifeline`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from django.db import DatabaseError, connections
from django.utils import timezone

from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.periodic.firing import PeriodicFirer
from django_bourbon_jobs.worker import maintenance
from django_bourbon_jobs.worker.exits import describe_exit, oom_kill_counter, read_oom_kills
from django_bourbon_jobs.worker.lifeline import prefer_for_oom_kill, set_parent_death_signal
from django_bourbon_jobs.worker.process import (
    EXIT_OK,
    EXIT_RECYCLE,
    WorkerConfig,
    WorkerProcess,
    new_worker_id,
)
from django_bourbon_jobs.worker.startlog import StartLog

logger = logging.getLogger("django_bourbon_jobs.supervisor")

RESTART_PAUSE = 1.0
"""Seconds to wait before replacing a child that died within ``RESTART_PAUSE`` of starting."""


def _child_main(config: WorkerConfig) -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    set_parent_death_signal(signal.SIGTERM)
    prefer_for_oom_kill()
    worker = WorkerProcess(config)
    worker.install_signal_handlers()
    if worker.parent.parent_gone():  # the supervisor died before the death signal was armed
        worker.request_stop()
    code = worker.run()
    connections.close_all()
    os._exit(code)


@dataclass
class Child:
    process: BaseProcess
    config: WorkerConfig
    started: float

    @property
    def start_log(self) -> StartLog:
        assert self.config.start_log is not None
        return self.config.start_log


class Supervisor:
    def __init__(self, config: WorkerConfig, processes: int, periodic: bool = True) -> None:
        self.config = config
        self.processes = processes
        self.children: list[Child] = []
        self.stopping = threading.Event()
        self._context = multiprocessing.get_context("fork")
        interval = get_settings().RESCUE_INTERVAL
        self.duties: list[maintenance.SupervisorDuty] = [
            maintenance.Rescuer(config.using, interval),
            maintenance.Pruner(config.using, interval),
            maintenance.HeldSteps(config.using, every=1.0),
        ]
        if periodic:
            self.duties.append(maintenance.Firing(config.using, every=1.0, firer=PeriodicFirer(config.using)))
        self._oom_counter = oom_kill_counter()
        self._oom_kills = read_oom_kills(self._oom_counter)
        # A signal handler writes here, so the wait for child exits wakes at once
        # (PEP 475 would otherwise resume the wait after the handler).
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)

    def request_stop(self, *_: Any) -> None:
        self.stopping.set()
        try:
            os.write(self._wake_write, b"x")
        except BlockingIOError:
            pass

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> int:
        self._maintain()
        for _ in range(self.processes):
            self._spawn()
        while not self.stopping.is_set() and self.children:
            self._wait_for_exits(timeout=self._until_maintenance())
            self._maintain()
        self._stop_children()
        os.close(self._wake_read)
        os.close(self._wake_write)
        return 0

    def _spawn(self) -> None:
        connections.close_all()
        config = replace(
            self.config,
            worker_id=new_worker_id(),
            parent_pid=os.getpid(),
            start_log=StartLog(self.config.threads, self.config.batch_size or 1),
        )
        process = self._context.Process(
            target=_child_main, args=(config,), name=f"bourbon-worker-{len(self.children)}"
        )
        process.start()
        self.children.append(Child(process, config, time.monotonic()))
        logger.info("started worker %s (pid %s)", config.worker_id, process.pid)

    def _wait_for_exits(self, timeout: float) -> None:
        sentinels = {child.process.sentinel: child for child in self.children}
        for ready in wait([*sentinels, self._wake_read], timeout=timeout):
            if ready in sentinels:
                self._on_exit(sentinels[ready])  # type: ignore[index]

    def _on_exit(self, child: Child) -> None:
        child.process.join()
        self.children.remove(child)
        code = child.process.exitcode
        ending = self._rescue(child)
        if self.stopping.is_set() or (self.config.burst and code == EXIT_OK):
            return
        if code not in (EXIT_OK, EXIT_RECYCLE):
            logger.error("worker %s: %s Replacing it.", child.config.worker_id, ending)
        if code != EXIT_RECYCLE and time.monotonic() - child.started < RESTART_PAUSE:
            self.stopping.wait(RESTART_PAUSE)
        if not self.stopping.is_set():
            self._spawn()

    def _rescue(self, child: Child) -> str:
        """Settle a gone child's jobs: refund those it never started, charge the others with why.

        Returns how the child ended, in words.
        """
        oom_kills = (self._oom_kills, read_oom_kills(self._oom_counter))
        self._oom_kills = oom_kills[1]
        ending = describe_exit(
            child.process.pid, child.process.exitcode, child.start_log.last_rss(), oom_kills
        )
        try:
            maintenance.settle_dead_worker(
                child.config.worker_id, child.start_log, ending, timezone.now(), self.config.using
            )
        except DatabaseError as exc:
            logger.warning(
                "could not settle jobs of %s now (%s); their leases will", child.config.worker_id, exc
            )
            connections[self.config.using].close()
        finally:
            child.start_log.close()
        return ending

    def _until_maintenance(self) -> float:
        return max(min(duty.next_at for duty in self.duties) - time.monotonic(), 0.05)

    def _maintain(self) -> None:
        """Run each duty that is due; a failed one is tried again at its next turn."""
        try:
            for duty in self.duties:
                self._run_duty(duty)
        finally:
            connections.close_all()

    def _run_duty(self, duty: maintenance.SupervisorDuty) -> None:
        try:
            duty.run_once(timezone.now())
        except DatabaseError as exc:
            logger.warning("%s pass failed (%s); will retry", type(duty).__name__.lower(), exc)
            connections[self.config.using].close()
        except Exception:
            logger.exception("%s pass failed; will retry", type(duty).__name__.lower())

    def _stop_children(self) -> None:
        """SIGTERM every child, give them the grace period, then SIGKILL what is left."""
        for child in self.children:
            if child.process.is_alive():
                os.kill(child.process.pid, signal.SIGTERM)  # type: ignore[arg-type]
        deadline = time.monotonic() + (self.config.shutdown_grace or 0.0) + 5.0
        for child in list(self.children):
            child.process.join(max(deadline - time.monotonic(), 0.0))
            if child.process.is_alive():
                child.process.kill()
                child.process.join()
            self.children.remove(child)
            self._rescue(child)
