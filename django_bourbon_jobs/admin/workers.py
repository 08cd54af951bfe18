"""Live workers: read-only, each with its heartbeat age and how many jobs it is running."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from django_bourbon_jobs.admin.display import format_duration
from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.models import Job, Worker


def running_jobs_count() -> Coalesce:
    """A correlated subquery: the page's workers get their counts in the list query itself."""
    per_worker = (
        Job.objects.running()
        .filter(worker_id=OuterRef("pk"))
        .order_by()
        .values("worker_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(per_worker, output_field=IntegerField()), 0)


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ["__str__", "id", "queues_display", "threads", "running_jobs", "started_at", "heartbeat"]
    readonly_fields = ["id", "hostname", "pid", "queues", "threads", "started_at", "last_heartbeat_at"]
    search_fields = ["=id", "hostname"]
    show_facets = admin.ShowFacets.NEVER

    class Media:
        css = {"all": ["bourbon_jobs/admin.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Worker]:
        return super().get_queryset(request).annotate(running_jobs=running_jobs_count())

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="queues")
    def queues_display(self, worker: Worker) -> str:
        return ", ".join(worker.queues) or "all"

    @admin.display(description="running jobs", ordering="running_jobs")
    def running_jobs(self, worker: Worker) -> int:
        return int(getattr(worker, "running_jobs", 0))

    @admin.display(description="last heartbeat", ordering="last_heartbeat_at")
    def heartbeat(self, worker: Worker) -> SafeString:
        now = timezone.now()
        age = format_duration(now - worker.last_heartbeat_at)
        if worker.is_stale(now, get_settings().LEASE_SECONDS):
            return format_html('<span class="bourbon-status bourbon-status-failed">stale</span> {} ago', age)
        return format_html("{} ago", age)
