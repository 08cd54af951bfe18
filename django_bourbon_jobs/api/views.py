"""The jobs API: dispatch, status, list, cancel, retry and live events.

Policy is in class attributes (``permission_classes``, ``dispatch_throttle_classes``,
``stream_throttle_classes``,
``pagination_class``, the stream's intervals); subclass :class:`JobViewSet` and
route your subclass to change it.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse, HttpResponseBase
from django.tasks.exceptions import InvalidTask
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, Throttled, ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from django_bourbon_jobs.api import openapi, registry
from django_bourbon_jobs.api.events import EventStreamRenderer, JobStream
from django_bourbon_jobs.api.parsers import BoundedJSONParser
from django_bourbon_jobs.api.permissions import JobPermission
from django_bourbon_jobs.api.serializers import (
    DispatchedSerializer,
    DispatchSerializer,
    JobSerializer,
    PayloadTooLarge,
    job_urls,
    storable_text,
)
from django_bourbon_jobs.api.throttling import DispatchRateThrottle, StreamRateThrottle
from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.dispatch import dispatch_async
from django_bourbon_jobs.events.sse import TooManyStreams, open_stream
from django_bourbon_jobs.exceptions import InvalidCallbackURL, InvalidPayload
from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.operations import request_cancel, retry_jobs
from django_bourbon_jobs.permissions import visible_jobs

ENVELOPE_BYTES = 8192
"""Room for the other dispatch fields on top of ``API_MAX_PAYLOAD_BYTES`` before a body is refused unread."""


class JobPagination(CursorPagination):
    ordering = "-enqueued_at"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    invalid_cursor_message = "Invalid cursor: use the next or previous link of a page."

    def decode_cursor(self, request: Request) -> Cursor | None:
        """A cursor that does not decode, or whose position is not a time, is a 400 (not a 404 or a 500)."""
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise ValidationError({"cursor": [self.invalid_cursor_message]}) from None
        if cursor is not None and cursor.position is not None and not _is_time(str(cursor.position)):
            raise ValidationError({"cursor": [self.invalid_cursor_message]})
        return cursor


def _is_time(text: str) -> bool:
    try:
        return parse_datetime(text) is not None
    except ValueError:
        return False


class Conflict(ValidationError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


LIST_FILTERS = [
    OpenApiParameter("status", str, description="One status, or several separated by commas."),
    OpenApiParameter("task", str, description="A task alias or path."),
    OpenApiParameter("queue", str, description="A queue name."),
]
LIST_FILTER_NAMES = [parameter.name for parameter in LIST_FILTERS]


@extend_schema_view(
    list=openapi.extend_schema(
        operation_id="jobs_list",
        summary="The caller's jobs, newest first",
        parameters=LIST_FILTERS,
        responses={
            200: JobSerializer(many=True),
            400: openapi.error("A bad filter or cursor"),
            **openapi.COMMON,
        },
    ),
    retrieve=openapi.extend_schema(
        operation_id="jobs_retrieve",
        summary="A job's status",
        responses={200: JobSerializer, **openapi.ON_A_JOB},
    ),
)
class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = JobSerializer
    permission_classes = [IsAuthenticated, JobPermission]
    dispatch_throttle_classes = [DispatchRateThrottle]
    stream_throttle_classes = [StreamRateThrottle]
    pagination_class = JobPagination
    parser_classes = [BoundedJSONParser]
    lookup_value_regex = "[^/]+"
    """Any id reaches the view, so a malformed one gets the same JSON ``404`` as a missing one."""
    schema = openapi.JobSchema()
    stream_poll_interval = 0.5
    stream_heartbeat_interval = 15.0
    stream_max_seconds = 300.0
    """A stream ends after this long; the client reconnects with ``Last-Event-ID`` and misses nothing."""

    def get_queryset(self) -> QuerySet[Job]:
        return visible_jobs(self.request.user)

    def get_throttles(self) -> list[Any]:
        throttles = super().get_throttles()
        if self.action == "create":
            throttles += [throttle() for throttle in self.dispatch_throttle_classes]
        if self.action == "events":
            throttles += [throttle() for throttle in self.stream_throttle_classes]
        return throttles

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.action != "list":
            return queryset
        params = self.request.query_params
        for name in LIST_FILTER_NAMES:
            try:
                storable_text(params.get(name, ""))
            except ValidationError as exc:
                raise ValidationError({name: exc.detail}) from None
        if params.get("status"):
            statuses = params["status"].split(",")
            unknown = set(statuses) - set(JobStatus.values)
            if unknown:
                raise ValidationError(
                    {"status": f"Unknown status {sorted(unknown)}; use {JobStatus.values}."}
                )
            queryset = queryset.filter(status__in=statuses)
        if params.get("task"):
            queryset = queryset.filter(task_path=registry.task_path_for(params["task"]))
        if params.get("queue"):
            queryset = queryset.filter(queue_name=params["queue"])
        return queryset

    @openapi.extend_schema(
        operation_id="jobs_create",
        summary="Dispatch a job",
        request=DispatchSerializer,
        responses={
            202: DispatchedSerializer,
            400: openapi.error("Invalid input, or a task not in API_TASKS"),
            413: openapi.error("The payload is too large"),
            415: openapi.error("The body is not JSON"),
            **openapi.COMMON,
        },
    )
    def create(self, request: Request) -> Response:
        self.check_body_size(request)
        data = request.data
        if isinstance(data, dict) and "idempotency_key" not in data and "Idempotency-Key" in request.headers:
            data = {**data, "idempotency_key": request.headers["Idempotency-Key"]}
        serializer = DispatchSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        job_id, replayed = self.dispatch_job(serializer.validated_data)
        job_status: str = JobStatus.QUEUED
        if replayed:
            job_status = Job.objects.values_list("status", flat=True).get(pk=job_id)
        body = {"job_id": job_id, "status": job_status, **job_urls(request, job_id)}
        headers = {"Location": body["status_url"]}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(body, status=status.HTTP_202_ACCEPTED, headers=headers)

    @classmethod
    def request_body_limit(cls, method: str, action: str | None) -> int | None:
        """The largest body a request may send (read by ``django_bourbon_jobs.asgi``); None: no limit."""
        if method == "post" and action == "create":
            return get_settings().API_MAX_PAYLOAD_BYTES + ENVELOPE_BYTES
        return None

    def check_body_size(self, request: Request) -> None:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = self.request_body_limit("post", "create")
        if limit is not None and length > limit:
            raise PayloadTooLarge()

    def dispatch_job(self, data: dict[str, Any]) -> tuple[str, bool]:
        """Dispatch for the caller; the job id, and whether an idempotency key returned an earlier job."""
        options = {key: value for key, value in data.items() if key not in ("task", "payload")}
        before = timezone.now()
        try:
            result = dispatch_async(data["task"], data["payload"], dispatched_by=self.request.user, **options)
        except (InvalidTask, InvalidPayload, InvalidCallbackURL) as exc:
            raise ValidationError({"detail": str(exc)}) from None
        return result.id, result.enqueued_at is not None and result.enqueued_at < before

    @openapi.extend_schema(
        operation_id="jobs_cancel",
        summary="Cancel a job",
        description="A queued job is cancelled (200); a running one is asked to stop (202).",
        request=None,
        responses={
            200: JobSerializer,
            202: JobSerializer,
            409: openapi.error("Finished"),
            **openapi.ACTING_ON_A_JOB,
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        job = self.get_object()
        outcome = request_cancel(str(job.pk))
        if outcome is None:
            raise Conflict(
                {"detail": f"The job is {job.status}; only queued or running jobs can be cancelled."}
            )
        job.refresh_from_db()
        code = status.HTTP_200_OK if outcome == "cancelled" else status.HTTP_202_ACCEPTED
        return Response(self.get_serializer(job).data, status=code)

    @openapi.extend_schema(
        operation_id="jobs_retry",
        summary="Retry a failed or cancelled job",
        request=None,
        responses={
            202: JobSerializer,
            409: openapi.error("Not failed or cancelled"),
            **openapi.ACTING_ON_A_JOB,
        },
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        job = self.get_object()
        if not retry_jobs(Job.objects.filter(pk=job.pk)):
            raise Conflict(
                {"detail": f"The job is {job.status}; only failed or cancelled jobs can be retried."}
            )
        job.refresh_from_db()
        return Response(self.get_serializer(job).data, status=status.HTTP_202_ACCEPTED)

    @openapi.extend_schema(
        operation_id="jobs_events",
        summary="Live status (Server-Sent Events)",
        description=(
            "`status` and `progress` events, each with the job as `data`, until the job finishes. "
            "Send `Last-Event-ID` when reconnecting; `204` means the job finished "
            "and you have its final state."
        ),
        parameters=[OpenApiParameter("Last-Event-ID", str, OpenApiParameter.HEADER)],
        responses=openapi.EVENTS,
    )
    @action(detail=True, methods=["get"], renderer_classes=[EventStreamRenderer, JSONRenderer])
    def events(self, request: Request, pk: str | None = None) -> HttpResponseBase:
        job = self.get_object()
        stream = JobStream(
            queryset=self.get_queryset(),
            job_id=job.pk,
            represent=lambda job: self.get_serializer(job).data,
            last_event_id=request.headers.get("Last-Event-ID"),
            poll_interval=self.stream_poll_interval,
            heartbeat_interval=self.stream_heartbeat_interval,
            max_seconds=self.stream_max_seconds,
        )
        if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
            if stream.last_event_id and stream.last_event_id == stream.snapshot(job)[1]:
                return HttpResponse(status=status.HTTP_204_NO_CONTENT)
        limits = get_settings()
        try:
            return open_stream(request.user.pk, stream, limits.STREAMS_PER_USER, limits.STREAMS_PER_PROCESS)
        except TooManyStreams as exc:
            raise Throttled(wait=exc.retry_after, detail=str(exc)) from None
