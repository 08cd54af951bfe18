"""Retry, cancel and delete, on a selection or on everything the filter matches.

The queryset an action receives is lazy; with "select all" it is the changelist's whole
filtered set. Retry and cancel go through :mod:`~django_bourbon_jobs.operations`, as the
API's do: the ids are read and changed in chunks, and every job is logged, announced and
sent its signal. Delete is one DELETE and never loads rows.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from django_bourbon_jobs import operations
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
    changed = operations.retry_jobs(actionable_jobs(request.user, queryset, "retry"))
    model_admin.message_user(
        request, f"Queued {_jobs(changed)} again.{_own_only(request, 'retry')}", messages.SUCCESS
    )


@admin.action(permissions=["cancel"], description="Cancel selected jobs (queued)")
def cancel_jobs(model_admin: admin.ModelAdmin[Job], request: HttpRequest, queryset: QuerySet[Job]) -> None:
    """Through :func:`~django_bourbon_jobs.operations.cancel_queued`, which sends ``job_finished`` per job."""
    changed = operations.cancel_queued(actionable_jobs(request.user, queryset, "cancel"))
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
