"""The job admin: a read-only list and page, the failures list, and the operator actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import ActionLocation
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from django_bourbon_jobs import operations
from django_bourbon_jobs.admin import display
from django_bourbon_jobs.admin.actions import cancel_jobs, delete_jobs, retry_jobs
from django_bourbon_jobs.admin.changelist import JobChangeList
from django_bourbon_jobs.admin.dashboard import dashboard_view
from django_bourbon_jobs.admin.filters import (
    LAST_EXCEPTION,
    LAST_MESSAGE,
    EnqueuedWithinFilter,
    ExceptionClassFilter,
    QueueFilter,
    TaskFilter,
)
from django_bourbon_jobs.admin.live import DashboardStream
from django_bourbon_jobs.admin.paginator import CappedCountPaginator
from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.events.sse import TooManyStreams, open_stream
from django_bourbon_jobs.models import Job, Worker, WorkflowStep
from django_bourbon_jobs.permissions import Action, can_act, can_view_all, owns, visible_jobs

JSON_FIELDS: dict[str, Callable[[Job], Any]] = {
    "payload": lambda job: {"args": job.args, "kwargs": job.kwargs},
    "result": lambda job: job.return_value,
    "progress": lambda job: job.progress,
}
"""The JSON columns a job's page shows, by the name its "show all" link uses."""

SUMMARY_FIELDS = ("id", "status_badge", "task_path", "queue_name", "priority", "attempts_of_max")
TIMELINE_FIELDS = ("timeline_display", "run_after", "due_at", "duration", "worker_link", "dispatched_by")
OTHER_FIELDS = (
    "workflow_link",
    "idempotency_key",
    "unique_key",
    "unique_while",
    "callback_url",
    "cancel_requested_at",
)


class JobAdminBase(admin.ModelAdmin):
    """What the job list and the failures list share: read-only rows, bounded queries, the actions."""

    actions = [retry_jobs, cancel_jobs, delete_jobs]
    search_fields = ["=id", "task_path", "errors"]
    search_help_text = "A job id, part of a task path, or text from an error message or traceback."
    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    change_list_template = "admin/bourbon_jobs/job/change_list.html"

    class Media:
        css = {"all": ["bourbon_jobs/admin.css"]}

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return JobChangeList

    def get_actions(
        self, request: HttpRequest, action_location: ActionLocation = ActionLocation.CHANGE_LIST
    ) -> dict[str, Any]:
        actions = super().get_actions(request, action_location)
        actions.pop("delete_selected", None)
        return actions

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        return visible_jobs(request.user, super().get_queryset(request))

    def has_module_permission(self, request: HttpRequest) -> bool:
        """Every staff user has jobs of their own to look at (see :mod:`~django_bourbon_jobs.permissions`)."""
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """The list (narrowed by :meth:`get_queryset`) for all staff; a job for its owner or ``view_job``."""
        return obj is None or can_view_all(request.user) or owns(request.user, obj)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        """Anyone may retry their own jobs; the action narrows the selection (:func:`actionable_jobs`)."""
        return True

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return True

    @admin.display(description="status", ordering="status")
    def status_badge(self, job: Job) -> SafeString:
        return display.status_badge(job.status)

    @admin.display(description="attempts")
    def attempts_of_max(self, job: Job) -> str:
        return f"{job.attempts}/{job.max_attempts}"

    @admin.display(description="duration")
    def duration(self, job: Job) -> str:
        return display.format_duration(display.job_duration(job))

    @admin.display(description="enqueued", ordering="enqueued_at")
    def enqueued(self, job: Job) -> SafeString | str:
        return display.compact_time(job.enqueued_at)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, job: Job) -> SafeString | str:
        return display.compact_time(job.finished_at)


@admin.register(Job)
class JobAdmin(JobAdminBase):
    list_display = [
        "id",
        "status_badge",
        "task_path",
        "queue_name",
        "priority",
        "attempts_of_max",
        "enqueued",
        "duration",
    ]
    list_filter = ["status", TaskFilter, QueueFilter, EnqueuedWithinFilter]
    sortable_by = ["enqueued", "priority"]
    ordering = ["-enqueued_at"]
    change_form_template = "admin/bourbon_jobs/job/change_form.html"
    dashboard_poll_interval = 5.0
    """Seconds between the dashboard stream's reads without Redis (or while it is down)."""
    dashboard_min_gap = 1.0
    """Least seconds between two reads woken by Redis: a busy system refreshes the page once a second."""
    dashboard_heartbeat_interval = 15.0
    dashboard_max_seconds = 300.0
    """The stream ends after this long; the browser reconnects with ``Last-Event-ID`` and misses nothing."""
    fieldsets = [
        (None, {"fields": SUMMARY_FIELDS}),
        ("Payload and result", {"fields": ["payload", "result", "progress_display"]}),
        ("Errors", {"fields": ["errors_display"]}),
        ("Timeline", {"fields": TIMELINE_FIELDS}),
        ("Other", {"fields": OTHER_FIELDS}),
    ]
    readonly_fields = [
        *SUMMARY_FIELDS,
        *["payload", "result", "progress_display", "errors_display"],
        *TIMELINE_FIELDS,
        *OTHER_FIELDS,
    ]

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        return [
            path("failures/", wrap(self.failures_view), name="{}_{}_failures".format(*info)),
            path("dashboard/", wrap(self.dashboard_view), name="{}_{}_dashboard".format(*info)),
            path(
                "dashboard/events/",
                wrap(self.dashboard_events_view),
                name="{}_{}_dashboard_events".format(*info),
            ),
            path("<path:object_id>/retry/", wrap(self.retry_view), name="{}_{}_retry".format(*info)),
            path("<path:object_id>/cancel/", wrap(self.cancel_view), name="{}_{}_cancel".format(*info)),
            path("<path:object_id>/json/<str:field>/", wrap(self.json_view), name="{}_{}_json".format(*info)),
            *super().get_urls(),
        ]

    def failures_view(self, request: HttpRequest) -> HttpResponse:
        failures = FailedJobAdmin(self.model, self.admin_site)
        return failures.changelist_view(request, extra_context={"title": "Failures", "failures": True})

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        if not can_view_all(request.user):  # it counts everyone's jobs
            raise PermissionDenied
        return dashboard_view(self, request)

    def dashboard_events_view(self, request: HttpRequest) -> HttpResponseBase:
        """The dashboard page's live stream (Server-Sent Events); see :mod:`.live`."""
        if not can_view_all(request.user):
            raise PermissionDenied
        stream = DashboardStream(
            since=request.headers.get("Last-Event-ID") or request.GET.get("since"),
            poll_interval=self.dashboard_poll_interval,
            min_gap=self.dashboard_min_gap,
            heartbeat_interval=self.dashboard_heartbeat_interval,
            max_seconds=self.dashboard_max_seconds,
        )
        limits = get_settings()
        try:
            return open_stream(request.user.pk, stream, limits.STREAMS_PER_USER, limits.STREAMS_PER_PROCESS)
        except TooManyStreams as exc:
            return HttpResponse(str(exc), status=429, headers={"Retry-After": str(exc.retry_after)})

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        refused = "Only a failed or cancelled job can be retried."
        return _transition(self, request, object_id, "retry", _retry_one, "Queued again.", refused)

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        refused = "Only a queued job can be cancelled."
        return _transition(self, request, object_id, "cancel", _cancel_one, "Cancelled.", refused)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        job = self.get_object(request, object_id)
        extra = {
            **(extra_context or {}),
            "can_retry": job is not None and can_act(request.user, job, "retry"),
            "can_cancel": job is not None and can_act(request.user, job, "cancel"),
        }
        return super().change_view(request, object_id, form_url, extra)

    def json_view(self, request: HttpRequest, object_id: str, field: str) -> HttpResponse:
        """The whole of a payload, result or progress that the job page shows cut short."""
        job = self.get_object(request, object_id)
        if job is None or field not in JSON_FIELDS or not self.has_view_permission(request, job):
            raise Http404
        return HttpResponse(display.json_text(JSON_FIELDS[field](job)), content_type="application/json")

    def _json_url(self, job: Job, field: str) -> str:
        name = f"admin:{self.opts.app_label}_{self.opts.model_name}_json"
        return reverse(name, args=[job.pk, field], current_app=self.admin_site.name)

    @admin.display(description="payload (args, kwargs)")
    def payload(self, job: Job) -> SafeString:
        return display.pretty_json(JSON_FIELDS["payload"](job), self._json_url(job, "payload"))

    @admin.display(description="result")
    def result(self, job: Job) -> SafeString:
        return display.pretty_json(job.return_value, self._json_url(job, "result"))

    @admin.display(description="progress")
    def progress_display(self, job: Job) -> SafeString:
        return display.pretty_json(job.progress, self._json_url(job, "progress"))

    @admin.display(description="errors (newest first)")
    def errors_display(self, job: Job) -> SafeString:
        return display.render_errors(job)

    @admin.display(description="timeline")
    def timeline_display(self, job: Job) -> SafeString:
        return display.render_timeline(job)

    @admin.display(description="workflow")
    def workflow_link(self, job: Job) -> SafeString | str:
        if job.workflow_id is None:
            return "—"
        step = WorkflowStep.objects.filter(pk=job.pk).values_list("name", flat=True).first()
        url = reverse(
            "admin:bourbon_jobs_workflow_change", args=[job.workflow_id], current_app=self.admin_site.name
        )
        return format_html('<a href="{}">{}</a> (step {})', url, job.workflow_id, step)

    @admin.display(description="worker")
    def worker_link(self, job: Job) -> SafeString | str:
        worker_id = job.worker_id or next(reversed(job.worker_ids), "")
        if not worker_id:
            return "—"
        worker = Worker.objects.filter(pk=worker_id).first()
        if worker is None:
            return f"{worker_id} (no longer running)"
        url = reverse("admin:bourbon_jobs_worker_change", args=[worker.pk], current_app=self.admin_site.name)
        return format_html('<a href="{}">{}</a> ({})', url, worker, worker_id)


class FailedJobAdmin(JobAdminBase):
    """The dead-letter queue: only failed jobs, newest failure first, grouped by exception class.

    Not registered: :meth:`JobAdmin.failures_view` serves it at ``.../job/failures/``, so it
    needs no proxy model (and no migration).
    """

    list_display = [
        "id",
        "task_path",
        "queue_name",
        "last_exception",
        "last_message",
        "attempts_of_max",
        "finished",
    ]
    list_filter = [ExceptionClassFilter, TaskFilter, QueueFilter, EnqueuedWithinFilter]
    sortable_by = ["finished"]
    ordering = ["-finished_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        return (
            super()
            .get_queryset(request)
            .failed()  # type: ignore[attr-defined]
            .annotate(last_exception=LAST_EXCEPTION, last_message=LAST_MESSAGE)
        )

    @admin.display(description="exception")
    def last_exception(self, job: Job) -> str:
        return str(getattr(job, "last_exception", "") or "")

    @admin.display(description="last error")
    def last_message(self, job: Job) -> str:
        return Truncator(getattr(job, "last_message", "") or "").chars(160)


def _retry_one(job: Job) -> bool:
    return operations.retry_jobs(Job.objects.filter(pk=job.pk)) == 1


def _cancel_one(job: Job) -> bool:
    return operations.cancel_queued(Job.objects.filter(pk=job.pk)) == 1


def _transition(
    model_admin: JobAdmin,
    request: HttpRequest,
    object_id: str,
    permission: Action,
    change: Callable[[Job], bool],
    done: str,
    refused: str,
) -> HttpResponse:
    """POST-only single-job retry/cancel from the job page, for whoever :func:`can_act` on the job."""
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "POST"})
    job = model_admin.get_object(request, object_id)
    if job is None:
        raise Http404("No such job.")
    if not can_act(request.user, job, permission):
        raise PermissionDenied
    if change(job):
        model_admin.message_user(request, done, messages.SUCCESS)
    else:
        model_admin.message_user(request, refused, messages.WARNING)
    url = reverse("admin:bourbon_jobs_job_change", args=[job.pk], current_app=model_admin.admin_site.name)
    return HttpResponseRedirect(url)
