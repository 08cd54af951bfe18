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


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class JobQuerySet(models.QuerySet["Job"]):
    def queued(self) -> JobQuerySet:
        return self.filter(status=JobStatus.QUEUED)

    def running(self) -> JobQuerySet:
        return self.filter(status=JobStatus.RUNNING)

    def succeeded(self) -> JobQuerySet:
        return self.filter(status=JobStatus.SUCCEEDED)

    def failed(self) -> JobQuerySet:
        return self.filter(status=JobStatus.FAILED)

    def finished(self) -> JobQuerySet:
        return self.filter(status__in=FINISHED_STATUSES)

    def due(self, now: datetime) -> JobQuerySet:
        return self.queued().filter(run_after__lte=now)

    def held_by(self, worker_id: str) -> JobQuerySet:
        return self.running().filter(worker_id=worker_id)

    def lease_expired(self, now: datetime) -> JobQuerySet:
        return self.running().filter(lease_expires_at__lt=now)

    def cancel(self, now: datetime) -> int:
        """Cancel the queued jobs among these; running and finished ones are left alone."""
        return self.queued().update(status=JobStatus.CANCELLED, finished_at=now)

    def retry(self, now: datetime) -> int:
        """Queue failed and cancelled jobs again with fresh attempts; their error history stays."""
        return self.filter(status__in=(JobStatus.FAILED, JobStatus.CANCELLED)).update(
            status=JobStatus.QUEUED,
            attempts=0,
            run_after=now,
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
    "run_after",
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
    run_after = models.DateTimeField(help_text="The job is not claimed before this time.")
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
        on_delete=models.SET_NULL,
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

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-enqueued_at"]
        permissions = [("retry_job", "Can retry jobs"), ("cancel_job", "Can cancel jobs")]
        indexes = [
            models.Index(models.F("enqueued_at").desc(), name="bourbon_job_newest"),
            models.Index("status", models.F("enqueued_at").desc(), name="bourbon_job_status_newest"),
            # The claim: WHERE status='queued' AND limit_key='' AND run_after <= now
            # ORDER BY priority DESC, run_after, id. Partial, so finished and limited rows cost nothing.
            models.Index(
                models.F("priority").desc(),
                "run_after",
                "id",
                condition=Q(status="queued", limit_key=""),
                name="bourbon_job_claim",
            ),
            # The limited claim, per limit key (docs/flow-control.md).
            models.Index(
                "limit_key",
                models.F("priority").desc(),
                "run_after",
                "id",
                condition=Q(status="queued") & ~Q(limit_key=""),
                name="bourbon_job_limited",
            ),
            # The limited claim: does a limited queue have due jobs (of any task)?
            models.Index(
                fields=["queue_name", "run_after"],
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
        self.run_after = at
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
