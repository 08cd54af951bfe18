"""``manage.py runworkers``: parse and validate options, build a Supervisor, run it.

It says what it does at ``-v 1`` (the default) even in a project without ``LOGGING``: a
start banner, warnings and errors (retries, failures, replaced processes) and a last line
when it stops. ``-v 2`` adds every job's start and end, ``-v 0`` prints errors only.
"""

from __future__ import annotations

import logging
import os
import time
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from django_bourbon_jobs import __version__
from django_bourbon_jobs.worker.process import WorkerConfig
from django_bourbon_jobs.worker.supervisor import Supervisor

LOG_LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO}
"""``--verbosity`` to the level shown when the project configures no logging (3: DEBUG)."""


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
        verbosity = options["verbosity"]
        show_logs(verbosity)
        if verbosity >= 1:
            self.stdout.write(banner(config, options["processes"]))
        began = time.monotonic()
        supervisor = Supervisor(config, processes=options["processes"], periodic=not options["no_periodic"])
        supervisor.install_signal_handlers()
        supervisor.run()
        if verbosity >= 1:
            self.stdout.write(f"runworkers stopped after {time.monotonic() - began:.1f} s.")


def banner(config: WorkerConfig, processes: int) -> str:
    """One line: version, database, queues, processes x threads, burst."""
    database = connections[config.using]
    queues = ", ".join(sorted(config.queues)) if config.queues else "every queue"
    pool = f"{processes} process{'es' if processes != 1 else ''} x {config.threads} thread"
    pool += "s" if config.threads != 1 else ""
    mode = "; --burst: exits when nothing is due" if config.burst else "; Ctrl-C or SIGTERM stops"
    return (
        f"django-bourbon-jobs {__version__}: {pool}, "
        f"database {config.using!r} ({database.vendor} {database.settings_dict.get('NAME')}), "
        f"queues: {queues}{mode}"
    )


def show_logs(verbosity: int) -> None:
    """Print the jobs' log to stderr when the project configures no logging of its own.

    A project with ``LOGGING`` keeps exactly what it configured. Our logger reports retries
    and failures with their reason; from Django's ``django.tasks`` (each start and success,
    at ``-v 2``) only the lines ours does not repeat are shown, and none when ``DEBUG`` is on,
    since Django's own console handler shows them then.
    """
    if settings.LOGGING:
        return
    level = LOG_LEVELS.get(verbosity, logging.DEBUG)
    _print_logger("django_bourbon_jobs", level)
    if level <= logging.INFO and not settings.DEBUG:
        _print_logger("django.tasks", level).addFilter(lambda record: record.levelno < logging.WARNING)


def _print_logger(name: str, level: int) -> logging.Handler:
    handler = logging.StreamHandler()
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(min(level, logger.getEffectiveLevel()))
    return handler
