"""``manage.py prunejobs``: delete finished jobs older than ``BOURBON_JOBS['RETENTION']``.

``runworkers`` already prunes a bounded amount on every maintenance pass; this
command catches up in one go (after raising retention, or from cron).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from django_bourbon_jobs.worker import maintenance


class Command(BaseCommand):
    help = "Delete finished jobs older than their status's retention, in small batches."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--database", default="default", help="Database alias holding the jobs.")

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = maintenance.prune_finished(timezone.now(), options["database"])
        self.stdout.write(f"Deleted {deleted} finished job(s).")
