"""The workflow admin: a read-only list (name, status, progress, started, duration) and a page that draws
the graph (server-side SVG) with each step linked to its job, and retry or cancel for whoever may."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import ActionLocation
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from django_bourbon_jobs import operations
from django_bourbon_jobs.admin import display, graph
from django_bourbon_jobs.models import Workflow, WorkflowStatus
from django_bourbon_jobs.permissions import (
    Action,
    actionable_jobs,
    can_act,
    can_view_all,
    owns,
    visible_workflows,
)
from django_bourbon_jobs.workflow_graph import read_steps

STEPS_LISTED = 1000
"""Steps a workflow's page lists; a larger workflow shows the first ones and says how many more."""


def workflow_badge(status: str) -> SafeString:
    return format_html(
        '<span class="bourbon-status bourbon-status-{}">{}</span>', status, WorkflowStatus(status).label
    )


@admin.action(permissions=["retry"], description="Retry selected workflows from their failed steps")
def retry_workflows(model_admin: WorkflowAdmin, request: HttpRequest, queryset: QuerySet[Workflow]) -> None:
    ids = list(actionable_jobs(request.user, queryset, "retry").values_list("pk", flat=True))
    retried = sum(1 for pk in ids if operations.retry_workflow(pk))
    model_admin.message_user(
        request, f"Retried {retried} workflow(s) from their failed steps.", messages.SUCCESS
    )


@admin.action(permissions=["cancel"], description="Cancel selected workflows (running)")
def cancel_workflows(model_admin: WorkflowAdmin, request: HttpRequest, queryset: QuerySet[Workflow]) -> None:
    ids = list(actionable_jobs(request.user, queryset, "cancel").values_list("pk", flat=True))
    cancelled = sum(1 for pk in ids if operations.cancel_workflow(pk))
    model_admin.message_user(request, f"Cancelled {cancelled} workflow(s).", messages.SUCCESS)


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = ["name", "status_badge", "progress", "started_at", "duration"]
    list_filter = ["status"]
    search_fields = ["=id", "name"]
    ordering = ["-started_at"]
    sortable_by = ["started_at", "name"]
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    actions = [retry_workflows, cancel_workflows]

    class Media:
        css = {"all": ["bourbon_jobs/admin.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Workflow]:
        return visible_workflows(request.user, super().get_queryset(request))

    def get_actions(
        self, request: HttpRequest, action_location: ActionLocation = ActionLocation.CHANGE_LIST
    ) -> dict[str, Any]:
        actions = super().get_actions(request, action_location)
        actions.pop("delete_selected", None)
        return actions

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None or can_view_all(request.user) or owns(request.user, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        """Anyone may retry their own workflows; the action narrows the selection."""
        return True

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return True

    @admin.display(description="status", ordering="status")
    def status_badge(self, workflow: Workflow) -> SafeString:
        return workflow_badge(workflow.status)

    @admin.display(description="progress")
    def progress(self, workflow: Workflow) -> str:
        failed = f" ({workflow.steps_failed} failed)" if workflow.steps_failed else ""
        return f"{workflow.steps_finished}/{workflow.step_count}{failed}"

    @admin.display(description="duration")
    def duration(self, workflow: Workflow) -> str:
        end = workflow.finished_at or timezone.now()
        running = "" if workflow.finished_at else " so far"
        return display.format_duration(end - workflow.started_at) + running

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/retry/", wrap(self.retry_view), name="{}_{}_retry".format(*info)),
            path("<path:object_id>/cancel/", wrap(self.cancel_view), name="{}_{}_cancel".format(*info)),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        """The workflow's page: its graph, its steps (each linked to its job), retry and cancel."""
        workflow = self.get_object(request, object_id)
        if workflow is None or not self.has_view_permission(request, workflow):
            raise Http404("No such workflow.")
        steps = read_steps(workflow)
        job_url = {step.name: self._job_url(step.job_id) for step in steps}
        context = {
            **self.admin_site.each_context(request),
            "title": f"Workflow {workflow.name}",
            "opts": self.opts,
            "workflow": workflow,
            "status_badge": workflow_badge(workflow.status),
            "progress": self.progress(workflow),
            "duration": self.duration(workflow),
            "graph": graph.layout(steps, job_url),
            "max_drawn": graph.MAX_DRAWN,
            "node_width": graph.NODE_WIDTH,
            "node_height": graph.NODE_HEIGHT,
            "steps": [(step, job_url[step.name]) for step in steps[:STEPS_LISTED]],
            "steps_not_listed": max(len(steps) - STEPS_LISTED, 0),
            "can_retry": workflow.steps_failed > 0 and can_act(request.user, workflow, "retry"),
            "can_cancel": workflow.status == WorkflowStatus.RUNNING
            and can_act(request.user, workflow, "cancel"),
        }
        return TemplateResponse(request, "admin/bourbon_jobs/workflow/detail.html", context)

    def _job_url(self, job_id: Any) -> str:
        return reverse("admin:bourbon_jobs_job_change", args=[job_id], current_app=self.admin_site.name)

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        refused = "This workflow has no failed or cancelled step to retry."
        return self._transition(request, object_id, "retry", operations.retry_workflow, "Retrying.", refused)

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        refused = "Only a running workflow can be cancelled."
        return self._transition(
            request, object_id, "cancel", operations.cancel_workflow, "Cancelled.", refused
        )

    def _transition(
        self,
        request: HttpRequest,
        object_id: str,
        permission: Action,
        change: Callable[[Any], Any],
        done: str,
        refused: str,
    ) -> HttpResponse:
        """POST-only retry/cancel from the workflow's page, for whoever :func:`can_act` on it."""
        if request.method != "POST":
            return HttpResponse(status=405, headers={"Allow": "POST"})
        workflow = self.get_object(request, object_id)
        if workflow is None:
            raise Http404("No such workflow.")
        if not can_act(request.user, workflow, permission):
            raise PermissionDenied
        level = messages.SUCCESS if change(workflow.pk) else messages.WARNING
        self.message_user(request, done if level == messages.SUCCESS else refused, level)
        url = reverse(
            "admin:bourbon_jobs_workflow_change", args=[workflow.pk], current_app=self.admin_site.name
        )
        return HttpResponseRedirect(url)
