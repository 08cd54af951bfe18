"""The dashboard: the system at a glance, in six small queries.

Counts by status and by queue, the oldest due job's wait per queue, throughput and
failure rate per minute over the last hour, the live workers with their current jobs,
and the open circuit breakers.
The page keeps itself current through :mod:`~django_bourbon_jobs.admin.live`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin
from django.db.models import Count, Min, Q
from django.db.models.functions import TruncMinute
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from django_bourbon_jobs.admin import chart
from django_bourbon_jobs.admin.display import format_duration
from django_bourbon_jobs.admin.limits import circuit_text
from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.events.sse import event_id
from django_bourbon_jobs.models import Job, JobStatus, Limit, Worker

WINDOW_MINUTES = 60


@dataclass
class QueueRow:
    name: str
    queued: int
    due: int
    running: int
    oldest_wait: str


@dataclass
class WorkerRow:
    worker: Worker
    stale: bool
    heartbeat_age: str
    current_jobs: list[dict[str, Any]] = field(default_factory=list)


def status_counts() -> list[tuple[str, str, int]]:
    counts = dict(Job.objects.order_by().values_list("status").annotate(n=Count("pk")))
    return [(status.value, status.label, counts.get(status.value, 0)) for status in JobStatus]


def queue_rows(now: datetime) -> list[QueueRow]:
    rows = (
        Job.objects.filter(status__in=(JobStatus.QUEUED, JobStatus.RUNNING))
        .order_by("queue_name")
        .values("queue_name")
        .annotate(
            queued=Count("pk", filter=Q(status=JobStatus.QUEUED)),
            due=Count("pk", filter=Q(status=JobStatus.QUEUED, due_at__lte=now)),
            running=Count("pk", filter=Q(status=JobStatus.RUNNING)),
            oldest_due=Min("due_at", filter=Q(status=JobStatus.QUEUED, due_at__lte=now)),
        )
    )
    return [
        QueueRow(
            name=row["queue_name"],
            queued=row["queued"],
            due=row["due"],
            running=row["running"],
            oldest_wait=format_duration(now - row["oldest_due"]) if row["oldest_due"] else "—",
        )
        for row in rows
    ]


def throughput(now: datetime) -> list[chart.Minute]:
    """Jobs finished per minute over the last hour (the status/finished_at index serves it)."""
    end = now.replace(second=0, microsecond=0)
    start = end - timedelta(minutes=WINDOW_MINUTES - 1)
    rows = (
        Job.objects.filter(status__in=(JobStatus.SUCCEEDED, JobStatus.FAILED), finished_at__gte=start)
        .annotate(minute=TruncMinute("finished_at"))
        .order_by()
        .values_list("minute", "status")
        .annotate(n=Count("pk"))
    )
    per_minute: dict[datetime, dict[str, int]] = defaultdict(dict)
    for minute, status, n in rows:
        per_minute[minute][status] = n
    starts = [start + timedelta(minutes=i) for i in range(WINDOW_MINUTES)]
    return [
        chart.Minute(s, per_minute[s].get(JobStatus.SUCCEEDED, 0), per_minute[s].get(JobStatus.FAILED, 0))
        for s in starts
    ]


def failure_rate(minutes: list[chart.Minute]) -> str:
    failed = sum(m.failed for m in minutes)
    total = failed + sum(m.succeeded for m in minutes)
    return f"{100 * failed / total:.1f}%" if total else "—"


def worker_rows(now: datetime) -> list[WorkerRow]:
    lease = get_settings().LEASE_SECONDS
    rows = {
        w.pk: WorkerRow(w, w.is_stale(now, lease), format_duration(now - w.last_heartbeat_at))
        for w in Worker.objects.all()
    }
    running = Job.objects.running().filter(worker_id__in=list(rows)).order_by("last_attempted_at")
    for job in running.values("id", "task_path", "worker_id"):
        rows[job["worker_id"]].current_jobs.append(dict(job))
    return list(rows.values())


@dataclass
class CircuitRow:
    key: str
    state: str
    failures: int


def open_circuits() -> list[CircuitRow]:
    """Open circuit breakers (half-open ones too): their tasks' jobs wait queued."""
    rows = Limit.objects.filter(breaker_threshold__isnull=False, open_until__isnull=False).order_by("key")
    return [CircuitRow(row.key, circuit_text(row), row.failures) for row in rows]


def fingerprint(counts: list[tuple[str, str, int]], worker_ids: Iterable[str]) -> str:
    """A digest of what moves when jobs or workers change: equal digests, nothing to refresh."""
    return event_id(json.dumps([[(value, n) for value, _, n in counts], sorted(worker_ids)]))


def dashboard_view(model_admin: admin.ModelAdmin[Job], request: HttpRequest) -> TemplateResponse:
    now = timezone.now()
    minutes = throughput(now)
    counts = status_counts()
    workers = worker_rows(now)
    info = model_admin.opts.app_label, model_admin.opts.model_name
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Jobs dashboard",
        "opts": model_admin.opts,
        "now": now,
        "status_counts": counts,
        "queues": queue_rows(now),
        "minutes": minutes,
        "finished_last_hour": sum(m.succeeded + m.failed for m in minutes),
        "failed_last_hour": sum(m.failed for m in minutes),
        "failure_rate": failure_rate(minutes),
        "bars": chart.bars(minutes),
        "ticks": chart.ticks(minutes),
        "chart_width": chart.WIDTH,
        "chart_height": chart.HEIGHT,
        "chart_plot_height": chart.HEIGHT - chart.AXIS,
        "workers": workers,
        "open_circuits": open_circuits(),
        "lease_seconds": get_settings().LEASE_SECONDS,
        "fingerprint": fingerprint(counts, (row.worker.pk for row in workers)),
        "events_url": reverse(
            "admin:{}_{}_dashboard_events".format(*info), current_app=model_admin.admin_site.name
        ),
    }
    return TemplateResponse(request, "admin/bourbon_jobs/dashboard.html", context)
