"""Periodic schedules in the admin: add, edit, pause, resume, run now; next and last run, the last job.

Schedules declared in ``BOURBON_JOBS["PERIODIC"]`` are shown read-only (change them in the
settings), but can be run now. Each change goes through :mod:`django_bourbon_jobs.periodic.control`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from django_bourbon_jobs.admin import display
from django_bourbon_jobs.models import Job, PeriodicRun, PeriodicSchedule
from django_bourbon_jobs.periodic import control, definitions

RECENT_RUNS = 10


def _says(reason: str) -> str:
    return f"This value {reason}."


class PeriodicScheduleForm(forms.ModelForm):
    """The same checks as the settings' (``definitions``), each message on its field."""

    class Meta:
        model = PeriodicSchedule
        fields = [
            "name",
            "task",
            "enabled",
            "cron",
            "every",
            "timezone",
            "missed",
            "args",
            "kwargs",
            "queue_name",
            "priority",
        ]
        help_texts = {"every": "Seconds (30) or [days] hh:mm:ss (1 00:00:00)."}

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        data["args"] = [] if data.get("args") is None else data["args"]
        data["kwargs"] = {} if data.get("kwargs") is None else data["kwargs"]
        self._check("task", definitions.task_problem)
        self._check_timing(data)
        if data.get("timezone"):
            self._check("timezone", definitions.timezone_problem)
        self._check("args", definitions.args_problem)
        self._check("kwargs", definitions.kwargs_problem)
        if "task" in data and not self.has_error("task"):
            task = definitions.load_task(data["task"])
            routing = definitions.routing_problem(task, data.get("queue_name"), data.get("priority"))
            if routing:
                self.add_error("queue_name" if data.get("queue_name") else "priority", routing)
        return data

    def _check(self, name: str, problem: Any) -> None:
        if name in self.cleaned_data and not self.has_error(name):
            reason = problem(self.cleaned_data[name])
            if reason:
                self.add_error(name, _says(reason))

    def _check_timing(self, data: dict[str, Any]) -> None:
        if self.has_error("cron") or self.has_error("every"):
            return
        cron, every = (data.get("cron") or "").strip(), data.get("every")
        if bool(cron) == (every is not None):
            self.add_error(
                None,
                "Give a cron expression or an interval (every), not both."
                if cron
                else "Give a cron expression or an interval (every).",
            )
        elif cron:
            data["cron"] = cron
            self._check("cron", definitions.cron_problem)
        else:
            self._check("every", definitions.every_problem)


def _when(moment: datetime) -> str:
    """A moment as the admin shows datetimes: in the current time zone, to the second."""
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")


def _interval(every: timedelta) -> str:
    seconds = every.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"every {seconds / size:g} {unit}"
    return f"every {seconds:g} s"


@admin.action(permissions=["change"], description="Run selected schedules now")
def run_selected_now(
    model_admin: PeriodicScheduleAdmin, request: HttpRequest, queryset: QuerySet[PeriodicSchedule]
) -> None:
    job_ids = [control.run_now(schedule) for schedule in queryset]
    model_admin.message_user(request, f"Enqueued {len(job_ids)} job(s).", messages.SUCCESS)


@admin.action(permissions=["change"], description="Pause selected schedules")
def pause_selected(
    model_admin: PeriodicScheduleAdmin, request: HttpRequest, queryset: QuerySet[PeriodicSchedule]
) -> None:
    paused = control.pause(queryset)
    model_admin.message_user(
        request, f"Paused {paused} schedule(s).{_settings_note(queryset)}", messages.SUCCESS
    )


@admin.action(permissions=["change"], description="Resume selected schedules")
def resume_selected(
    model_admin: PeriodicScheduleAdmin, request: HttpRequest, queryset: QuerySet[PeriodicSchedule]
) -> None:
    resumed = control.resume(queryset)
    model_admin.message_user(
        request, f"Resumed {resumed} schedule(s).{_settings_note(queryset)}", messages.SUCCESS
    )


def _settings_note(queryset: QuerySet[PeriodicSchedule]) -> str:
    declared = queryset.count() - control.editable(queryset).count()
    return f" {declared} from settings left as they are: change them in BOURBON_JOBS." if declared else ""


@admin.register(PeriodicSchedule)
class PeriodicScheduleAdmin(admin.ModelAdmin):
    form = PeriodicScheduleForm
    list_display = ["name", "task", "timing", "enabled", "source", "next_run_at", "last_run_at", "last_job"]
    list_filter = ["enabled", "source"]
    search_fields = ["name", "task"]
    actions = [run_selected_now, pause_selected, resume_selected]
    readonly_fields = ["source", "next_run_at", "last_run_at", "last_job", "recent_runs"]
    fieldsets = [
        (None, {"fields": ["name", "task", "enabled"]}),
        ("When", {"fields": ["cron", "every", "timezone", "missed"]}),
        ("The job", {"fields": ["args", "kwargs", "queue_name", "priority"]}),
        ("Runs", {"fields": ["source", "next_run_at", "last_run_at", "last_job", "recent_runs"]}),
    ]
    change_form_template = "admin/bourbon_jobs/periodicschedule/change_form.html"

    class Media:
        css = {"all": ["bourbon_jobs/admin.css"]}

    def get_fieldsets(self, request: HttpRequest, obj: PeriodicSchedule | None = None) -> Any:
        """A new schedule has no runs to show yet."""
        return self.fieldsets if obj is not None else self.fieldsets[:-1]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PeriodicSchedule]:
        status = Job.objects.filter(pk=OuterRef("last_job_id")).values("status")[:1]
        return super().get_queryset(request).annotate(last_job_status=Subquery(status))

    def has_change_permission(self, request: HttpRequest, obj: PeriodicSchedule | None = None) -> bool:
        """Settings' schedules are read-only; the model-wide permission also lets one run them now."""
        return not (obj is not None and obj.from_settings) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: PeriodicSchedule | None = None) -> bool:
        return not (obj is not None and obj.from_settings) and super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: PeriodicSchedule, form: Any, change: bool) -> None:
        control.prepare_save(obj, form.changed_data)
        super().save_model(request, obj, form, change)

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        run = path(
            "<path:object_id>/run/", self.admin_site.admin_view(self.run_view), name="{}_{}_run".format(*info)
        )
        return [run, *super().get_urls()]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra = {**(extra_context or {}), "can_run": self.has_change_permission(request)}
        return super().change_view(request, object_id, form_url, extra)

    def run_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST-only "run now" from a schedule's page (settings' schedules too)."""
        if request.method != "POST":
            return HttpResponse(status=405, headers={"Allow": "POST"})
        schedule = self.get_object(request, object_id)
        if schedule is None:
            raise Http404("No such schedule.")
        if not self.has_change_permission(request):
            raise PermissionDenied
        job_id = control.run_now(schedule)
        self.message_user(request, format_html("Enqueued job {}.", self._job_link(job_id)), messages.SUCCESS)
        url = reverse(
            "admin:bourbon_jobs_periodicschedule_change", args=[schedule.pk], current_app=self.admin_site.name
        )
        return HttpResponseRedirect(url)

    @admin.display(description="when")
    def timing(self, schedule: PeriodicSchedule) -> str:
        if schedule.every is not None:
            return _interval(schedule.every)
        return f"{schedule.cron} ({schedule.zone_name})"

    @admin.display(description="last job")
    def last_job(self, schedule: PeriodicSchedule) -> SafeString | str:
        if schedule.last_job_id is None:
            return "—"
        status = getattr(schedule, "last_job_status", None)
        badge = display.status_badge(status) if status else format_html("{}", "pruned")
        return format_html("{} {}", self._job_link(schedule.last_job_id), badge)

    @admin.display(description="recent runs")
    def recent_runs(self, schedule: PeriodicSchedule) -> SafeString | str:
        runs = list(schedule.runs.order_by("-fired_at")[:RECENT_RUNS]) if schedule.pk else []
        if not runs:
            return "—"
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", map(self._row, runs)
        )
        head = SafeString("<tr><th>scheduled for</th><th>fired at</th><th>job</th><th></th></tr>")
        return format_html('<table class="bourbon-runs">{}{}</table>', head, rows)

    def _row(self, run: PeriodicRun) -> tuple[str, str, SafeString | str, str]:
        job = self._job_link(run.job_id) if run.job_id else "—"
        return _when(run.scheduled_at), _when(run.fired_at), job, "by hand" if run.manual else "scheduled"

    def _job_link(self, job_id: Any) -> SafeString:
        url = reverse("admin:bourbon_jobs_job_change", args=[job_id], current_app=self.admin_site.name)
        return format_html('<a href="{}">{}</a>', url, job_id)
