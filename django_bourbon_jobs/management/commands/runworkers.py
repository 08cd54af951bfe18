"""``manage.py runworkers``: parse and validate options, build a Supervisor, run it."""

from __future__ import annotations

import os
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_bourbon_jobs.worker.process import WorkerConfig
from django_bourbon_jobs.worker.supervisor import Supervisor


class Command(BaseCommand):
    help = "Run a supervised pool of worker processes that execute queued jobs."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--processes", type=int, default=os.cpu_count() or 1, help="Worker processes (default: CPUs)."
        )
        parser.add_argument("--threads", type=int, default=1, help="Threads per process, for I/O-bound jobs.")
        parser.add_argument(
            "--queues", default="", help="Comma-separated queue names (default: every queue)."
        )
        parser.add_argument(
            "--max-jobs", type=int, default=None, help="Replace a process after it has run N jobs."
        )
        parser.add_argument(
            "--grace", type=float, default=None, help="Seconds running jobs get after SIGTERM."
        )
        parser.add_argument("--batch-size", type=int, default=None, help="Jobs claimed per query.")
        parser.add_argument("--burst", action="store_true", help="Run what is due, then exit.")
        parser.add_argument("--database", default="default", help="Database alias holding the jobs.")
        parser.add_argument(
            "--no-periodic",
            action="store_true",
            help="Do not fire periodic schedules from this pool (another pool does).",
        )
        parser.add_argument(
            "--max-memory",
            type=int,
            default=None,
            metavar="MB",
            help="Replace a process, after its current jobs, once its resident memory passes MB megabytes.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        for name in ("processes", "threads", "max_jobs", "batch_size", "max_memory"):
            value = options[name]
            if value is not None and value < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1 (got {value}).")
        if options["grace"] is not None and options["grace"] < 0:
            raise CommandError(f"--grace must not be negative (got {options['grace']}).")
        queues = frozenset(q.strip() for q in options["queues"].split(",") if q.strip())
        config = WorkerConfig(
            queues=queues,
            threads=options["threads"],
            burst=options["burst"],
            max_jobs=options["max_jobs"],
            shutdown_grace=options["grace"],
            batch_size=options["batch_size"],
            using=options["database"],
            max_memory_mb=options["max_memory"],
        )
        supervisor = Supervisor(config, processes=options["processes"], periodic=not options["no_periodic"])
        supervisor.install_signal_handlers()
        supervisor.run()
