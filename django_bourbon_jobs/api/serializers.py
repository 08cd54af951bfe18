"""Dispatch input and job output."""

from __future__ import annotations

import json
from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import APIException

from django_bourbon_jobs.api import registry
from django_bourbon_jobs.callbacks import check_callback_url
from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.exceptions import InvalidCallbackURL
from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.permissions import can_see_tracebacks

MAX_DELAY = 366 * 86400.0
URL_NAMESPACE = "bourbon_jobs_api"


class PayloadTooLarge(APIException):
    status_code = 413
    default_detail = "The payload is larger than BOURBON_JOBS['API_MAX_PAYLOAD_BYTES']."
    default_code = "payload_too_large"


def storable_text(value: str) -> None:
    """Reject what the database cannot store as text: NUL and unpaired surrogates."""
    if "\x00" in value:
        raise serializers.ValidationError("Text must not contain NUL characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise serializers.ValidationError("Text must be valid Unicode (no unpaired surrogates).") from None


def _storable_json(value: Any) -> None:
    if isinstance(value, str):
        storable_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            storable_text(key)
            _storable_json(item)
    elif isinstance(value, list):
        for item in value:
            _storable_json(item)


class DispatchSerializer(serializers.Serializer):
    task = serializers.CharField(
        max_length=255, validators=[storable_text], help_text="An alias or task path listed in API_TASKS."
    )
    payload = serializers.JSONField(
        required=False, allow_null=True, default=None, help_text="The task's single argument (JSON)."
    )
    queue_name = serializers.CharField(max_length=100, required=False, validators=[storable_text])
    priority = serializers.IntegerField(min_value=-100, max_value=100, required=False)
    run_after = serializers.DateTimeField(required=False, help_text="Not run before this time.")
    delay = serializers.FloatField(
        min_value=0, max_value=MAX_DELAY, required=False, help_text="Seconds from now; not with run_after."
    )
    idempotency_key = serializers.CharField(
        max_length=255,
        required=False,
        validators=[storable_text],
        help_text="A repeat from the same user within IDEMPOTENCY_WINDOW returns the first job.",
    )
    callback_url = serializers.URLField(
        max_length=2000, required=False, help_text="POSTed the final state; its host must be allowed."
    )

    def validate_task(self, value: str) -> Any:
        try:
            return registry.resolve(value)
        except registry.TaskNotDispatchable as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_payload(self, value: Any) -> Any:
        size = len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        if size > get_settings().API_MAX_PAYLOAD_BYTES:
            raise PayloadTooLarge(
                f"The payload is {size} bytes; at most {get_settings().API_MAX_PAYLOAD_BYTES} are accepted."
            )
        _storable_json(value)
        return value

    def validate_callback_url(self, value: str) -> str:
        try:
            check_callback_url(value)
        except InvalidCallbackURL as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "run_after" in attrs and "delay" in attrs:
            raise serializers.ValidationError({"delay": "Pass run_after or delay, not both."})
        return attrs


class DispatchedSerializer(serializers.Serializer):
    """The ``202 Accepted`` answer to a dispatch."""

    job_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    status_url = serializers.URLField()
    events_url = serializers.URLField()


class JobErrorSerializer(serializers.Serializer):
    exception_class = serializers.CharField()
    message = serializers.CharField()
    attempt = serializers.IntegerField(allow_null=True)
    at = serializers.CharField(allow_null=True)
    traceback = serializers.CharField(required=False, help_text="Only for staff.")


class ProgressSerializer(serializers.Serializer):
    """Documents ``Job.progress``, which is shown as stored."""

    current = serializers.FloatField()
    total = serializers.FloatField(allow_null=True)
    message = serializers.CharField()
    at = serializers.DateTimeField()


def job_urls(request: Any, job_id: Any) -> dict[str, str]:
    def url(name: str) -> str:
        path = reverse(f"{URL_NAMESPACE}:{name}", kwargs={"pk": job_id})
        return request.build_absolute_uri(path) if request is not None else path

    return {"status_url": url("job-detail"), "events_url": url("job-events")}


class JobSerializer(serializers.ModelSerializer):
    job_id = serializers.UUIDField(source="id", read_only=True)
    task = serializers.SerializerMethodField()
    result = serializers.SerializerMethodField(help_text="The return value, once succeeded.")
    # The metaclass pops declared fields, so Serializer.errors stays the property it was.
    errors = serializers.SerializerMethodField(help_text="One per failed attempt, oldest first.")  # type: ignore[assignment]
    progress = serializers.SerializerMethodField(help_text="The last progress the job reported.")
    cancel_requested = serializers.SerializerMethodField()
    status_url = serializers.SerializerMethodField()
    events_url = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "job_id",
            "task",
            "queue_name",
            "priority",
            "status",
            "attempts",
            "max_attempts",
            "result",
            "errors",
            "progress",
            "cancel_requested",
            "enqueued_at",
            "started_at",
            "finished_at",
            "run_after",
            "due_at",
            "status_url",
            "events_url",
        ]
        read_only_fields = fields

    def get_task(self, job: Job) -> str:
        return registry.display_name(job.task_path)

    @extend_schema_field(OpenApiTypes.ANY)
    def get_result(self, job: Job) -> Any:
        return job.return_value if job.status == JobStatus.SUCCEEDED else None

    @extend_schema_field(JobErrorSerializer(many=True))
    def get_errors(self, job: Job) -> list[dict[str, Any]]:
        request = self.context.get("request")
        staff = request is not None and can_see_tracebacks(request.user)
        return [_error(error, staff) for error in job.errors]

    @extend_schema_field(ProgressSerializer(allow_null=True))
    def get_progress(self, job: Job) -> Any:
        return job.progress

    def get_cancel_requested(self, job: Job) -> bool:
        return job.cancel_requested_at is not None

    def get_status_url(self, job: Job) -> str:
        return job_urls(self.context.get("request"), job.pk)["status_url"]

    def get_events_url(self, job: Job) -> str:
        return job_urls(self.context.get("request"), job.pk)["events_url"]


def _error(error: dict[str, Any], with_traceback: bool) -> dict[str, Any]:
    shown = {
        "exception_class": error.get("exception_class_path", ""),
        "message": error.get("message", ""),
        "attempt": error.get("attempt"),
        "at": error.get("at"),
    }
    if with_traceback:
        shown["traceback"] = error.get("traceback", "")
    return shown
