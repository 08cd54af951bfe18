"""Jobs and the workers that run them.

State filters live on :class:`JobQuerySet`, and so does settling a lost attempt.
What the worker writes on its hot path (the claim, the heartbeat's lease renewal,
outcome batches, handing back unstarted jobs) is in :mod:`django_bourbon_jobs.store`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from django_bourbon_jobs.ids import uuid7
from django_bourbon_jobs.workflow_models import (
    OnFailure,
    StepDependency,
    Workflow,
    WorkflowStatus,
    WorkflowStep,
)

__all__ = [
    "FINISHED_STATUSES",
    "OUTCOME_FIELDS",
    "PENDING_STATUSES",
    "Job",
    "JobQuerySet",
    "JobStatus",
    "OnFailure",
    "StepDependency",
    "Worker",
    "Workflow",
    "WorkflowStatus",
    "WorkflowStep",
]


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    WAITING = "waiting", "Waiting"
    """A workflow step whose dependencies have not all finished: no claim matches it."""
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
PENDING_STATUSES = (JobStatus.QUEUED, JobStatus.WAITING)
"""Not started yet: queued, or a workflow step waiting for its dependencies."""


class JobQuerySet(models.QuerySet["Job"]):
    def queued(self) -> JobQuerySet:
        return self.filter(status=JobStatus.QUEUED)

    def pending(self) -> JobQuerySet:
        return self.filter(status__in=PENDING_STATUSES)

    def running(self) -> JobQuerySet:
        return self.filter(status=JobStatus.RUNNING)

    def succeeded(self) -> JobQuerySet:
        return self.filter(status=JobStatus.SUCCEEDED)

    def failed(self) -> JobQuerySet:
        return self.filter(status=JobStatus.FAILED)

    def finished(self) -> JobQuerySet:
        return self.filter(status__in=FINISHED_STATUSES)

    def due(self, now: datetime) -> JobQuerySet:
        return self.queued().filter(due_at__lte=now)

    def holding(self, task_path: str, unique_key: str, scope: str) -> JobQuerySet:
        """The job (at most one, by the constraints) holding ``unique_key`` for its task in ``scope``."""
        held = self.filter(task_path=task_path, unique_key=unique_key, unique_while=scope)
        if scope == "queued":
            return held.queued().filter(started_at__isnull=True)
        return held.filter(status__in=(JobStatus.QUEUED, JobStatus.RUNNING))

    def held_by(self, worker_id: str) -> JobQuerySet:
        return self.running().filter(worker_id=worker_id)

    def lease_expired(self, now: datetime) -> JobQuerySet:
        return self.running().filter(lease_expires_at__lt=now)

    def cancel(self, now: datetime) -> int:
        """Cancel the pending jobs among these; running and finished ones are left alone."""
        return self.pending().update(status=JobStatus.CANCELLED, finished_at=now)

    def retry(self, now: datetime) -> int:
        """Queue failed and cancelled jobs again with fresh attempts; their error history stays."""
        return self.filter(status__in=(JobStatus.FAILED, JobStatus.CANCELLED)).update(
            status=JobStatus.QUEUED,
            attempts=0,
            due_at=now,
            finished_at=None,
            lease_expires_at=None,
            worker_id="",
            progress=None,
            cancel_requested_at=None,
        )

    def settle_lost_attempt(self, job: Job, error: dict[str, Any], now: datetime) -> bool:
        """Requeue (or, with no attempts left, fail) a running job whose attempt ended without an outcome.

        An ``error`` marked ``"charged": False`` refunds the attempt its claim counted.
        """
        holder = job.worker_id
        if error.get("charged") is False:
            job.attempts -= 1
        if job.attempts >= job.max_attempts:
            job.mark_failed(error, now)
        else:
            job.schedule_retry(now, error)
        return bool(
            self.held_by(holder).filter(pk=job.pk).update(**{f: getattr(job, f) for f in OUTCOME_FIELDS})
        )


OUTCOME_FIELDS = [
    "status",
    "attempts",
    "return_value",
    "errors",
    "due_at",
    "finished_at",
    "lease_expires_at",
]


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    task_path = models.CharField(max_length=255)
    queue_name = models.CharField(max_length=100, default="default")
    priority = models.SmallIntegerField(default=0)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    run_after = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The earliest time to run the job, as dispatched (Django's Task.run_after); "
        "empty: as soon as possible.",
    )
    due_at = models.DateTimeField(
        default=timezone.now,
        help_text="When the job is next due: run_after or the enqueue time, then each retry's time. "
        "Workers claim by this, never before it.",
    )
    enqueued_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    last_attempted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    worker_id = models.CharField(max_length=64, blank=True, default="")
    return_value = models.JSONField(null=True, blank=True)
    errors = models.JSONField(default=list, blank=True)
    dispatched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DB_SET_NULL,
        related_name="+",
        db_index=False,  # bourbon_job_dispatcher below: partial, so the many anonymous jobs cost nothing
        help_text="The user whose request dispatched the job, when there was one.",
    )
    idempotency_key = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text="The dispatcher's key: a repeat within the window returns this job instead of a new one.",
    )
    callback_url = models.URLField(
        max_length=2000, blank=True, default="", help_text="POSTed the final state, signed (webhooks)."
    )
    progress = models.JSONField(
        null=True, blank=True, help_text="The last reported {current, total, message, at}."
    )
    cancel_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when a running job is asked to stop (cooperative cancel)."
    )
    unique_key = models.CharField(
        max_length=255,
        blank=True,
        default="",
        db_default="",
        help_text="While this job is in scope (unique_while), no other of its task with this key is queued.",
    )
    unique_while = models.CharField(
        max_length=6,
        blank=True,
        default="",
        db_default="",
        help_text="'active' (queued or running) or 'queued' (waiting, never started); blank: not unique.",
    )
    attempt_started = models.BooleanField(
        default=False,
        db_default=False,  # hand-written INSERTs (COPY, benchmarks) may leave it out
        help_text="The current attempt's code has started, as its worker's last heartbeat reported: "
        "a job whose lease runs out before that is given back its attempt.",
    )
    limit_key = models.CharField(
        max_length=300,
        blank=True,
        default="",
        db_default="",  # hand-written INSERTs (COPY, benchmarks) may leave it out
        help_text="The Limit row that governs this job ('task:<path>' or 'queue:<name>'); empty if none.",
    )

    workflow = models.ForeignKey(
        "bourbon_jobs.Workflow",
        null=True,
        blank=True,
        on_delete=models.DB_CASCADE,
        related_name="jobs",
        db_index=False,  # bourbon_job_workflow below: partial, so jobs outside workflows cost nothing
        help_text="The workflow this job is a step of (its WorkflowStep says which).",
    )

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-enqueued_at"]
        permissions = [("retry_job", "Can retry jobs"), ("cancel_job", "Can cancel jobs")]
        indexes = [
            models.Index(models.F("enqueued_at").desc(), name="bourbon_job_newest"),
            models.Index("status", models.F("enqueued_at").desc(), name="bourbon_job_status_newest"),
            # The claim: WHERE status='queued' AND limit_key='' AND due_at <= now
            # ORDER BY priority DESC, due_at, id. Partial, so finished and limited rows cost nothing.
            models.Index(
                models.F("priority").desc(),
                "due_at",
                "id",
                condition=Q(status="queued", limit_key=""),
                name="bourbon_job_claim",
            ),
            # The limited claim, per limit key (docs/flow-control.md).
            models.Index(
                "limit_key",
                models.F("priority").desc(),
                "due_at",
                "id",
                condition=Q(status="queued") & ~Q(limit_key=""),
                name="bourbon_job_limited",
            ),
            # The limited claim: does a limited queue have due jobs (of any task)?
            models.Index(
                fields=["queue_name", "due_at"],
                condition=Q(status="queued") & ~Q(limit_key=""),
                name="bourbon_job_limited_queue",
            ),
            models.Index(
                "lease_expires_at",
                condition=Q(status="running"),
                name="bourbon_job_lease",
            ),
            # Pruning: WHERE status = ... AND finished_at < cutoff. Partial, so that
            # enqueueing and claiming a job add nothing to it.
            models.Index(
                fields=["status", "finished_at"],
                condition=Q(finished_at__isnull=False),
                name="bourbon_job_finished",
            ),
            models.Index(
                "dispatched_by",
                models.F("enqueued_at").desc(),
                condition=Q(dispatched_by__isnull=False),
                name="bourbon_job_dispatcher",
            ),
            models.Index(
                fields=["dispatched_by", "idempotency_key", "enqueued_at"],
                condition=~Q(idempotency_key=""),
                name="bourbon_job_idempotency",
            ),
            models.Index(
                fields=["workflow"], condition=Q(workflow__isnull=False), name="bourbon_job_workflow"
            ),
        ]
        # Unique jobs: at most one job per (task, key) in its scope. Partial, so that jobs
        # without a key cost nothing; claims and outcomes need not know about them.
        constraints = [
            models.UniqueConstraint(
                fields=["task_path", "unique_key"],
                condition=Q(unique_while="active", status__in=["queued", "running"]),
                name="bourbon_job_unique_active",
            ),
            models.UniqueConstraint(
                fields=["task_path", "unique_key"],
                condition=Q(unique_while="queued", status="queued", started_at__isnull=True),
                name="bourbon_job_unique_queued",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_path} [{self.status}] {self.id}"

    @property
    def worker_ids(self) -> list[str]:
        """One worker id per charged attempt: those recorded with errors, then the current one."""
        charged = [error for error in self.errors if error.get("charged", True)]
        ids = [str(error.get("worker_id", "")) for error in charged][: self.attempts]
        return ids + [self.worker_id] * (self.attempts - len(ids))

    @property
    def refunded_attempts(self) -> int:
        """Attempts given back because they failed through no fault of the job (``"charged": false``)."""
        return sum(1 for error in self.errors if error.get("charged") is False)

    def add_error(self, error: dict[str, Any]) -> None:
        self.errors = [*self.errors, error]

    def schedule_retry(self, at: datetime, error: dict[str, Any]) -> None:
        self.add_error(error)
        self.status = JobStatus.QUEUED
        self.due_at = at
        self.lease_expires_at = None

    def mark_failed(self, error: dict[str, Any], now: datetime) -> None:
        self.add_error(error)
        self.status = JobStatus.FAILED
        self.finished_at = now
        self.lease_expires_at = None

    def mark_cancelled(self, now: datetime) -> None:
        self.status = JobStatus.CANCELLED
        self.finished_at = now
        self.lease_expires_at = None

    def mark_succeeded(self, return_value: Any, now: datetime) -> None:
        self.status = JobStatus.SUCCEEDED
        self.return_value = return_value
        self.finished_at = now
        self.lease_expires_at = None


class Worker(models.Model):
    """A live worker process; its heartbeat keeps its jobs' leases."""

    id = models.CharField(primary_key=True, max_length=64)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list, help_text="Empty means every queue.")
    threads = models.PositiveIntegerField(default=1)
    started_at = models.DateTimeField(default=timezone.now)
    last_heartbeat_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["hostname", "pid"]

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid}"

    def is_stale(self, now: datetime, lease_seconds: float) -> bool:
        return self.last_heartbeat_at < now - timedelta(seconds=lease_seconds)


class MissedPolicy(models.TextChoices):
    SKIP = "skip", "Skip missed times"
    RUN_LATEST = "run_latest", "Run the latest missed time once"


class ScheduleSource(models.TextChoices):
    SETTINGS = "settings", "Settings (read-only)"
    DATABASE = "database", "Admin"


class PeriodicSchedule(models.Model):
    """A task run on a cron expression or every N seconds, fired by the ``runworkers`` supervisors.

    Rows come from ``BOURBON_JOBS["PERIODIC"]`` (``source="settings"``, kept in step with the
    settings and read-only in the admin) or from operators in the admin. ``next_run_at`` is the
    next scheduled time the supervisors wait for; each time fires once (:class:`PeriodicRun`).
    """

    name = models.CharField(max_length=200, unique=True)
    task = models.CharField(max_length=255, help_text="Dotted path of a @task: reports.tasks.nightly.")
    cron = models.CharField(
        max_length=255, blank=True, help_text="Five-field cron expression (or @hourly, @daily...)."
    )
    every = models.DurationField(
        null=True, blank=True, help_text="Or run at this interval (counted from 1970-01-01 00:00 UTC)."
    )
    args = models.JSONField(default=list, blank=True, help_text="Positional arguments (a JSON list).")
    kwargs = models.JSONField(default=dict, blank=True, help_text="Keyword arguments (a JSON object).")
    timezone = models.CharField(
        max_length=64, blank=True, help_text="The cron expression's time zone; blank: TIME_ZONE."
    )
    queue_name = models.CharField(max_length=100, blank=True, help_text="Blank: the task's own queue.")
    priority = models.SmallIntegerField(null=True, blank=True, help_text="Blank: the task's own priority.")
    missed = models.CharField(
        max_length=10,
        choices=MissedPolicy.choices,
        default=MissedPolicy.SKIP,
        help_text="What runs after the supervisors were down past scheduled times.",
    )
    enabled = models.BooleanField(default=True)
    source = models.CharField(
        max_length=10, choices=ScheduleSource.choices, default=ScheduleSource.DATABASE, editable=False
    )
    next_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_run_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="The scheduled time of the last run."
    )
    last_job_id = models.UUIDField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def zone_name(self) -> str:
        return self.timezone or settings.TIME_ZONE

    @property
    def from_settings(self) -> bool:
        return self.source == ScheduleSource.SETTINGS


class PeriodicRun(models.Model):
    """One firing of a schedule: at most one per (schedule, scheduled time), however many supervisors race.

    The row is inserted in the same transaction as its job, so a second supervisor's insert
    for the same time fails on ``bourbon_periodic_once`` and it enqueues nothing. A manual
    run ("run now") is not a scheduled time and is left out of the constraint.
    """

    schedule = models.ForeignKey(PeriodicSchedule, on_delete=models.CASCADE, related_name="runs")
    scheduled_at = models.DateTimeField()
    fired_at = models.DateTimeField()
    job_id = models.UUIDField(null=True, blank=True, help_text="The job it enqueued (may be pruned).")
    manual = models.BooleanField(default=False, help_text="Run by hand from the admin, not by the schedule.")

    class Meta:
        ordering = ["-scheduled_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["schedule", "scheduled_at"], condition=Q(manual=False), name="bourbon_periodic_once"
            )
        ]
        indexes = [models.Index(fields=["scheduled_at"], name="bourbon_periodic_run_age")]

    def __str__(self) -> str:
        return f"{self.schedule_id} @ {self.scheduled_at.isoformat()}"


class Limit(models.Model):
    """One limited task (``task:<path>``) or queue (``queue:<name>``): its limits and their live state.

    Created when a limited task's job is enqueued and from ``QUEUE_LIMITS`` when
    workers start. :attr:`running` is kept by triggers on the job table (migration
    ``0011_limits``), so it changes in the same transaction as the jobs it counts;
    the claim reads it under a row lock, which always sees the newest committed
    version (docs/flow-control.md).
    """

    key = models.CharField(primary_key=True, max_length=300)
    concurrency = models.PositiveIntegerField(
        null=True, blank=True, help_text="Attempts at once; empty: no limit."
    )
    rate_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Starts per window of rate_window seconds; empty: no limit."
    )
    rate_window = models.FloatField(null=True, blank=True)
    running = models.IntegerField(
        default=0, db_default=0, help_text="Attempts running now (kept by triggers)."
    )
    recent_starts = models.JSONField(
        default=list,
        blank=True,
        help_text="The last rate_limit starts (microseconds since the epoch), oldest first.",
    )
    breaker_threshold = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Consecutive failed attempts that open the circuit; empty: no breaker.",
    )
    breaker_cooldown = models.FloatField(null=True, blank=True, help_text="Seconds the circuit stays open.")
    failures = models.PositiveIntegerField(default=0, help_text="Consecutive failed attempts so far.")
    opened_at = models.DateTimeField(null=True, blank=True)
    open_until = models.DateTimeField(
        null=True, blank=True, help_text="Set while the circuit is open: no attempt starts before it."
    )
    trial_job_id = models.UUIDField(
        null=True, blank=True, help_text="The half-open circuit's trial attempt, while it runs."
    )

    class Meta:
        ordering = ["key"]
        verbose_name = "limit and circuit"
        verbose_name_plural = "limits and circuits"
        permissions = [("close_circuit", "Can close circuits")]

    def __str__(self) -> str:
        return self.key

    @property
    def circuit_open(self) -> bool:
        return self.open_until is not None
