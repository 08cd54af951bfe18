"""Limits and circuit breakers: read-only (they come from ``@task`` options and ``QUEUE_LIMITS``).

Lists each limited task and queue with what it allows and what runs now, and each
circuit's state; open circuits first under the "circuit" filter. One action,
"Close selected circuits", goes through :func:`~django_bourbon_jobs.operations.close_circuit`
and needs the ``close_circuit`` permission.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from django_bourbon_jobs import operations
from django_bourbon_jobs.admin.display import format_duration
from django_bourbon_jobs.limits import RATE_UNITS
from django_bourbon_jobs.models import Limit

_UNIT_OF = {seconds: unit for unit, seconds in RATE_UNITS.items()}


def rate_text(limit: Limit) -> str:
    """``"10/s"`` as declared; a window that is no unit's as seconds."""
    if limit.rate_limit is None or limit.rate_window is None:
        return "—"
    unit = _UNIT_OF.get(limit.rate_window)
    return f"{limit.rate_limit}/{unit}" if unit else f"{limit.rate_limit} per {limit.rate_window:g} s"


def circuit_text(limit: Limit) -> str:
    """``closed``, ``open for 12 s more``, ``half-open: trial running`` or ``half-open: trial due``."""
    if limit.breaker_threshold is None:
        return "—"
    if limit.open_until is None:
        return "closed"
    if limit.trial_job_id is not None:
        return "half-open: trial running"
    now = timezone.now()
    if limit.open_until > now:
        return f"open for {format_duration(limit.open_until - now)} more"
    return "half-open: trial due"


class CircuitFilter(admin.SimpleListFilter):
    title = "circuit"
    parameter_name = "circuit"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "Open"), ("closed", "Closed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Limit]) -> QuerySet[Limit]:
        breakers = queryset.filter(breaker_threshold__isnull=False)
        if self.value() == "open":
            return breakers.filter(open_until__isnull=False)
        if self.value() == "closed":
            return breakers.filter(open_until__isnull=True)
        return queryset


@admin.action(permissions=["close_circuit"], description="Close selected circuits")
def close_circuits(
    model_admin: admin.ModelAdmin[Limit], request: HttpRequest, queryset: QuerySet[Limit]
) -> None:
    keys = list(queryset.filter(open_until__isnull=False).values_list("key", flat=True))
    closed = sum(operations.close_circuit(key) for key in keys)
    noun = "circuit" if closed == 1 else "circuits"
    model_admin.message_user(request, f"Closed {closed} {noun}.", messages.SUCCESS)


@admin.register(Limit)
class LimitAdmin(admin.ModelAdmin):
    list_display = ["key", "concurrency", "running", "rate", "circuit", "failures"]
    list_filter = [CircuitFilter]
    search_fields = ["key"]
    actions = [close_circuits]
    readonly_fields = [
        "key",
        "concurrency",
        "running",
        "rate",
        "recent_starts",
        "breaker_threshold",
        "breaker_cooldown",
        "circuit",
        "failures",
        "opened_at",
        "open_until",
        "trial_job_id",
    ]
    fields = list(readonly_fields)
    show_facets = admin.ShowFacets.NEVER

    class Media:
        css = {"all": ["bourbon_jobs/admin.css"]}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never: the queued jobs of a key whose row is gone would wait for ever."""
        return False

    def has_close_circuit_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("bourbon_jobs.close_circuit")

    @admin.display(description="rate")
    def rate(self, limit: Limit) -> str:
        return rate_text(limit)

    @admin.display(description="circuit", ordering="open_until")
    def circuit(self, limit: Limit) -> SafeString | str:
        text = circuit_text(limit)
        if limit.open_until is None:
            return text
        return format_html('<span class="bourbon-status bourbon-status-failed">{}</span>', text)
