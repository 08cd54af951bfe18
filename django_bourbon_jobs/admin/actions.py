"""Retry, cancel and delete, on a selection or on everything the filter matches.

The queryset an action receives is lazy; with "select all" it is the changelist's whole
filtered set. Retry and delete issue a single UPDATE or DELETE and never load rows; with
Redis, retry also announces the jobs it touched (up to ``fastpath.ANNOUNCE_LIMIT`` ids,
read before the UPDATE) to live readers. Cancel reads the queued ids and cancels them in
chunks, so that every cancelled job is logged, announced and sent ``job_finished``, as
it is when cancelled through the API.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from django_bourbon_jobs import fastpath
from django_bourbon_jobs.dispatch import cancel_queued
from django_bourbon_jobs.models import Job
from django_bourbon_jobs.permissions import Action, actionable_jobs, can_act_on_all


def _own_only(request: HttpRequest, action: Action) -> str:
    if can_act_on_all(request.user, action):
        return ""
    return f" Only your own jobs were considered: to {action} others' you need the {action}_job permission."


def _jobs(count: int) -> str:
    return f"{count:,} job" if count == 1 else f"{count:,} jobs"


@admin.action(permissions=["retry"], description="Retry selected jobs (failed or cancelled)")
def retry_jobs(model_admin: admin.ModelAdmin[Job], request: HttpRequest, queryset: QuerySet[Job]) -> None:
    queryset = actionable_jobs(request.user, queryset, "retry")
    announced = fastpath.ids_to_announce(queryset)
    changed = queryset.retry(timezone.now())  # type: ignore[attr-defined]
    fastpath.publish_job_changes(announced, queryset.db)
    model_admin.message_user(
        request, f"Queued {_jobs(changed)} again.{_own_only(request, 'retry')}", messages.SUCCESS
    )


@admin.action(permissions=["cancel"], description="Cancel selected jobs (queued)")
def cancel_jobs(model_admin: admin.ModelAdmin[Job], request: HttpRequest, queryset: QuerySet[Job]) -> None:
    """Through :func:`~django_bourbon_jobs.dispatch.cancel_queued`, which sends ``job_finished`` per job."""
    changed = cancel_queued(actionable_jobs(request.user, queryset, "cancel"))
    model_admin.message_user(
        request, f"Cancelled {_jobs(changed)}.{_own_only(request, 'cancel')}", messages.SUCCESS
    )


@admin.action(permissions=["delete"], description="Delete selected jobs")
def delete_jobs(
    model_admin: admin.ModelAdmin[Job], request: HttpRequest, queryset: QuerySet[Job]
) -> TemplateResponse | None:
    """Ask once (showing how many), then delete with one query; no per-row confirmation list."""
    if request.POST.get("post") != "yes":
        return _confirm_delete(model_admin, request, queryset)
    deleted, _ = queryset.order_by().delete()
    model_admin.message_user(request, f"Deleted {_jobs(deleted)}.", messages.SUCCESS)
    return None


def _confirm_delete(
    model_admin: admin.ModelAdmin[Job], request: HttpRequest, queryset: QuerySet[Job]
) -> TemplateResponse:
    context: dict[str, Any] = {
        **model_admin.admin_site.each_context(request),
        "title": "Delete jobs?",
        "opts": model_admin.opts,
        "count_label": _jobs(queryset.count()),
        "select_across": request.POST.get("select_across", "0"),
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/bourbon_jobs/job/delete_jobs_confirmation.html", context)
