"""The workflows API: a workflow's status with its steps, cancel, retry, and its live events.

Routed by ``django_bourbon_jobs.api.urls`` under ``workflows/``. The same rules as for
jobs (:mod:`django_bourbon_jobs.permissions`): a workflow belongs to the user who
dispatched it, ``view_job`` sees everyone's, ``cancel_job``/``retry_job`` act on them,
and one the caller may not see answers ``404`` as a missing one does.

The event stream (``GET workflows/{id}/events/``, and ``ws/workflows/{id}/`` over
WebSocket) sends a ``workflow`` event with the workflow's state when it changes and a
``step`` event for each step whose state changed, until the workflow has finished.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import router
from django.db.models import QuerySet
from django.http import HttpResponse, HttpResponseBase
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import Throttled
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from django_bourbon_jobs.api import openapi
from django_bourbon_jobs.api.events import EventStreamRenderer
from django_bourbon_jobs.api.serializers import URL_NAMESPACE
from django_bourbon_jobs.api.throttling import StreamRateThrottle
from django_bourbon_jobs.api.views import Conflict, JobPagination
from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.events import redis_channels
from django_bourbon_jobs.events.sse import TooManyStreams, event_id, open_stream
from django_bourbon_jobs.events.stream import Event, EventStream
from django_bourbon_jobs.events.subscribe import JobEvents, release_connection
from django_bourbon_jobs.models import Workflow
from django_bourbon_jobs.operations import cancel_workflow, retry_workflow
from django_bourbon_jobs.permissions import can_act, visible_workflows
from django_bourbon_jobs.workflow_graph import StepView, read_steps

workflow_schema = functools.partial(openapi.extend_schema, openapi.WorkflowSchema)


def _url(request: Any, name: str, pk: Any) -> str:
    path = reverse(f"{URL_NAMESPACE}:{name}", kwargs={"pk": pk})
    return request.build_absolute_uri(path) if request is not None else path


class StepSerializer(serializers.Serializer):
    name = serializers.CharField()
    job_id = serializers.UUIDField()
    status = serializers.CharField(help_text="The step's job's status (``waiting`` until released).")
    after = serializers.ListField(child=serializers.CharField(), help_text="The steps it waits for.")
    on_failure = serializers.CharField()
    attempts = serializers.IntegerField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    status_url = serializers.SerializerMethodField(help_text="The step's job (``GET /jobs/{id}/``).")

    def get_status_url(self, step: StepView) -> str:
        return _url(self.context.get("request"), "job-detail", step.job_id)


class ProgressCountSerializer(serializers.Serializer):
    finished = serializers.IntegerField(source="steps_finished")
    failed = serializers.IntegerField(source="steps_failed", help_text="Failed or cancelled steps.")
    total = serializers.IntegerField(source="step_count")


class WorkflowSerializer(serializers.ModelSerializer):
    workflow_id = serializers.UUIDField(source="id", read_only=True)
    progress = ProgressCountSerializer(source="*", read_only=True)
    status_url = serializers.SerializerMethodField()
    events_url = serializers.SerializerMethodField()

    class Meta:
        model = Workflow
        fields = ["workflow_id", "name", "status", "progress", "started_at", "finished_at"]
        fields += ["status_url", "events_url"]
        read_only_fields = fields

    def get_status_url(self, workflow: Workflow) -> str:
        return _url(self.context.get("request"), "workflow-detail", workflow.pk)

    def get_events_url(self, workflow: Workflow) -> str:
        return _url(self.context.get("request"), "workflow-events", workflow.pk)


class WorkflowDetailSerializer(WorkflowSerializer):
    steps = serializers.SerializerMethodField(help_text="Every step, in the order they were added.")

    class Meta(WorkflowSerializer.Meta):
        fields = [*WorkflowSerializer.Meta.fields, "steps"]
        read_only_fields = fields

    @extend_schema_field(StepSerializer(many=True))
    def get_steps(self, workflow: Workflow) -> list[dict[str, Any]]:
        return list(StepSerializer(read_steps(workflow), many=True, context=self.context).data)


class WorkflowPermission(BasePermission):
    """Who sees a workflow may read it; ``cancel`` and ``retry`` need :func:`~..permissions.can_act`."""

    message = "You may not do this to a workflow you did not dispatch."

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        action_name = getattr(view, "action", None)
        if action_name in ("cancel", "retry"):
            return can_act(request.user, obj, action_name)
        return True


class WorkflowPagination(JobPagination):
    ordering = "-started_at"


@dataclass
class WorkflowStream(EventStream):
    """Follows one workflow: a ``workflow`` event when its state changes, a ``step`` event per step that
    changed, until it has finished. Read from the database after every wake-up, as polling would."""

    queryset: Any
    workflow_id: Any
    represent: Callable[[Workflow], dict[str, Any]]
    represent_step: Callable[[StepView], dict[str, Any]]
    poll_interval: float = 0.5
    min_gap: float = 0.25
    heartbeat_interval: float = 15.0
    max_seconds: float = 300.0

    def __post_init__(self) -> None:
        super().__init__()
        self.sent: str | None = None
        self.steps_sent: dict[str, str] = {}

    def subscribe(self) -> JobEvents:
        channel = redis_channels.workflow_channel(self.workflow_id)
        return JobEvents(redis_channels.configured_alias(), self.poll_interval, channels=[channel])

    def read(self) -> tuple[Workflow | None, list[StepView]]:
        try:
            workflow = self.queryset.filter(pk=self.workflow_id).first()
            return workflow, read_steps(workflow) if workflow is not None else []
        finally:
            release_connection(router.db_for_read(Workflow))

    def updates(self) -> Iterator[Event]:
        if not self.take_read():
            return
        workflow, steps = self.read()
        if workflow is None:
            self.done = True
            yield Event("gone", json.dumps({"workflow_id": str(self.workflow_id)}))
            return
        yield from self.changed_steps(steps)
        data = _json(self.represent(workflow))
        if data != self.sent:
            self.sent = data
            yield Event("workflow", data, event_id(data))
        self.done = workflow.finished_at is not None

    def changed_steps(self, steps: list[StepView]) -> Iterator[Event]:
        for step in steps:
            data = _json(self.represent_step(step))
            if self.steps_sent.get(step.name) != data:
                self.steps_sent[step.name] = data
                yield Event("step", data, event_id(data))


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True)


ON_A_WORKFLOW = {**openapi.COMMON, 404: openapi.error("No such workflow, or one the caller may not see")}
ACTING_ON_A_WORKFLOW = {
    **ON_A_WORKFLOW,
    400: openapi.BAD_BODY,
    403: openapi.error("Someone else's workflow, without the permission to act on it"),
    415: openapi.error("The body is not JSON"),
}


@extend_schema_view(
    list=workflow_schema(
        operation_id="workflows_list",
        summary="The caller's workflows, newest first",
        responses={200: WorkflowSerializer(many=True), 400: openapi.error("A bad cursor"), **openapi.COMMON},
    ),
    retrieve=workflow_schema(
        operation_id="workflows_retrieve",
        summary="A workflow's status, with its steps",
        responses={200: WorkflowDetailSerializer, **ON_A_WORKFLOW},
    ),
)
class WorkflowViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    schema = openapi.WorkflowSchema()
    serializer_class = WorkflowSerializer
    permission_classes = [IsAuthenticated, WorkflowPermission]
    stream_throttle_classes = [StreamRateThrottle]
    pagination_class = WorkflowPagination
    lookup_value_regex = "[^/]+"
    stream_poll_interval = 0.5
    stream_heartbeat_interval = 15.0
    stream_max_seconds = 300.0

    def get_queryset(self) -> QuerySet[Workflow]:
        return visible_workflows(self.request.user)

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        return WorkflowSerializer if self.action == "list" else WorkflowDetailSerializer

    def get_throttles(self) -> list[Any]:
        throttles = super().get_throttles()
        if self.action == "events":
            throttles += [throttle() for throttle in self.stream_throttle_classes]
        return throttles

    @workflow_schema(
        operation_id="workflows_cancel",
        summary="Cancel a workflow",
        description="Steps not started are cancelled, running ones asked to stop; it is `cancelled` at once.",
        request=None,
        responses={200: WorkflowDetailSerializer, 409: openapi.error("Not running"), **ACTING_ON_A_WORKFLOW},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        workflow = self.get_object()
        if not cancel_workflow(workflow.pk):
            raise Conflict(
                {"detail": f"The workflow is {workflow.status}; only a running one can be cancelled."}
            )
        workflow.refresh_from_db()
        return Response(self.get_serializer(workflow).data, status=status.HTTP_200_OK)

    @workflow_schema(
        operation_id="workflows_retry",
        summary="Retry a workflow from its failed steps",
        description="Failed and cancelled steps run again; those after them wait for them again.",
        request=None,
        responses={
            202: WorkflowDetailSerializer,
            409: openapi.error("No failed or cancelled step"),
            **ACTING_ON_A_WORKFLOW,
        },
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        workflow = self.get_object()
        if not retry_workflow(workflow.pk):
            raise Conflict({"detail": "The workflow has no failed or cancelled step to retry."})
        workflow.refresh_from_db()
        return Response(self.get_serializer(workflow).data, status=status.HTTP_202_ACCEPTED)

    @workflow_schema(
        operation_id="workflows_events",
        summary="Live status (Server-Sent Events)",
        description=(
            "`workflow` events carry the workflow (as `GET /workflows/{id}/` shows it, without steps), "
            "`step` events a step that changed, until the workflow has finished; `204` means it finished "
            "and the client has its final state (`Last-Event-ID`)."
        ),
        parameters=[OpenApiParameter("Last-Event-ID", str, OpenApiParameter.HEADER)],
        responses=openapi.EVENTS,
    )
    @action(detail=True, methods=["get"], renderer_classes=[EventStreamRenderer, JSONRenderer])
    def events(self, request: Request, pk: str | None = None) -> HttpResponseBase:
        workflow = self.get_object()
        stream = self.build_stream(workflow)
        final = _json(stream.represent(workflow))
        if workflow.finished_at is not None and request.headers.get("Last-Event-ID") == event_id(final):
            return HttpResponse(status=status.HTTP_204_NO_CONTENT)
        limits = get_settings()
        try:
            return open_stream(request.user.pk, stream, limits.STREAMS_PER_USER, limits.STREAMS_PER_PROCESS)
        except TooManyStreams as exc:
            raise Throttled(wait=exc.retry_after, detail=str(exc)) from None

    def build_stream(self, workflow: Workflow) -> WorkflowStream:
        context = {"request": self.request}
        return WorkflowStream(
            queryset=self.get_queryset(),
            workflow_id=workflow.pk,
            represent=lambda row: dict(WorkflowSerializer(row, context=context).data),
            represent_step=lambda step: dict(StepSerializer(step, context=context).data),
            poll_interval=self.stream_poll_interval,
            heartbeat_interval=self.stream_heartbeat_interval,
            max_seconds=self.stream_max_seconds,
        )
