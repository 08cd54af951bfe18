"""List filters whose choices cost a bounded query, however many jobs there are."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.http import HttpRequest
from django.utils import timezone

from django_bourbon_jobs.models import Job

RECENT_ROWS = 10_000
"""How many of the newest jobs the task and queue filters look at for their choices."""

LAST_EXCEPTION = KeyTextTransform("exception_class_path", KeyTransform("-1", "errors"))
"""The last error's exception class path, as text (negative JSON indexes work on SQLite and PostgreSQL)."""
LAST_MESSAGE = KeyTextTransform("message", KeyTransform("-1", "errors"))


class RecentValuesFilter(admin.SimpleListFilter):
    """Choices are the distinct values among the newest ``RECENT_ROWS`` jobs (plus the one chosen).

    ``SELECT DISTINCT`` over the whole table would scan a million rows on every page load;
    any other value still works through the URL or the search box.
    """

    field_name = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        newest = Job.objects.order_by("-enqueued_at").values("pk")[:RECENT_ROWS]
        values = set(
            Job.objects.filter(pk__in=newest).values_list(self.field_name, flat=True).distinct().order_by()
        )
        if self.value():
            values.add(self.value())
        return [(value, value) for value in sorted(values)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        if self.value() is None:
            return queryset
        return queryset.filter(**{self.field_name: self.value()})


class TaskFilter(RecentValuesFilter):
    title = "task"
    parameter_name = field_name = "task_path"


class QueueFilter(RecentValuesFilter):
    title = "queue"
    parameter_name = field_name = "queue_name"


class EnqueuedWithinFilter(admin.SimpleListFilter):
    title = "enqueued"
    parameter_name = "enqueued"
    ranges = {
        "1h": ("In the last hour", timedelta(hours=1)),
        "24h": ("In the last 24 hours", timedelta(days=1)),
        "7d": ("In the last 7 days", timedelta(days=7)),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _) in self.ranges.items()] + [("older", "Older than 7 days")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        now = timezone.now()
        if self.value() == "older":
            return queryset.filter(enqueued_at__lt=now - self.ranges["7d"][1])
        if self.value() in self.ranges:
            return queryset.filter(enqueued_at__gte=now - self.ranges[str(self.value())][1])
        return queryset


class ExceptionClassFilter(admin.SimpleListFilter):
    """Failures grouped by their last error's exception class, with a count each.

    The groups are counted over the newest ``RECENT_ROWS`` failures (the status/finished_at
    index serves that), so the query stays bounded when failures pile up.
    """

    title = "exception"
    parameter_name = "exception"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        newest = Job.objects.failed().order_by("-finished_at").values("pk")[:RECENT_ROWS]
        groups = (
            Job.objects.filter(pk__in=newest)
            .annotate(exception=LAST_EXCEPTION)
            .values("exception")
            .annotate(jobs=Count("pk"))
            .order_by("-jobs", "exception")
        )
        choices = [(group["exception"], f"{group['exception']} ({group['jobs']})") for group in groups]
        return [(value, label) for value, label in choices if value]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        if self.value() is None:
            return queryset
        return queryset.filter(**{"errors__-1__exception_class_path": self.value()})
