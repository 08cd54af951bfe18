"""Workflows as rows: a :class:`Workflow`, a :class:`WorkflowStep` per job in it, and the edges between them.

A step *is* a :class:`~django_bourbon_jobs.models.Job` (``Job.workflow`` says which
workflow it belongs to); :class:`WorkflowStep` holds what only a step has: its name,
what to do when a dependency fails, and how many dependencies it still waits for.
A step that waits is a job in status ``waiting``, which no claim matches; the
transaction that stores its last dependency's outcome makes it ``queued``
(:mod:`django_bourbon_jobs.store.steps`).

Every relation here is ``ON DELETE CASCADE`` in the database (``DB_CASCADE``), so
deleting or pruning jobs costs no extra queries in Python, whether or not they
are steps. Loaded by :mod:`django_bourbon_jobs.models`; the job model is named by
its label here, so that this module imports nothing of the package's.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from django_bourbon_jobs.ids import uuid7


class WorkflowStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class OnFailure(models.TextChoices):
    CANCEL = "cancel", "Cancel"
    CONTINUE = "continue", "Continue"


class Workflow(models.Model):
    """One dispatched workflow, and how many of its steps have finished."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    name = models.CharField(max_length=255)
    status = models.CharField(max_length=10, choices=WorkflowStatus.choices, default=WorkflowStatus.RUNNING)
    started_at = models.DateTimeField(help_text="When it was dispatched.")
    finished_at = models.DateTimeField(null=True, blank=True, help_text="When its last step finished.")
    dispatched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DB_SET_NULL,
        related_name="+",
        db_index=False,  # bourbon_workflow_dispatcher below, partial
        help_text="The user who dispatched it; every step is theirs too.",
    )
    step_count = models.PositiveIntegerField()
    steps_finished = models.PositiveIntegerField(
        default=0, help_text="Steps in a final state (succeeded, failed or cancelled)."
    )
    steps_failed = models.PositiveIntegerField(default=0, help_text="Steps that failed or were cancelled.")

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(models.F("started_at").desc(), name="bourbon_workflow_newest"),
            models.Index(
                "dispatched_by",
                models.F("started_at").desc(),
                condition=Q(dispatched_by__isnull=False),
                name="bourbon_workflow_dispatcher",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} [{self.status}] {self.id}"

    @property
    def is_finished(self) -> bool:
        return self.finished_at is not None


class WorkflowStep(models.Model):
    """A job's place in its workflow. Its primary key is the job's id."""

    job = models.OneToOneField(
        "bourbon_jobs.Job", primary_key=True, on_delete=models.DB_CASCADE, related_name="workflow_step"
    )
    workflow = models.ForeignKey(Workflow, on_delete=models.DB_CASCADE, related_name="steps", db_index=False)
    name = models.CharField(max_length=200)
    position = models.PositiveIntegerField(help_text="The order it was added in.")
    on_failure = models.CharField(max_length=10, choices=OnFailure.choices, default=OnFailure.CANCEL)
    takes_result = models.BooleanField(
        default=False, help_text="Its payload is its one dependency's return value, set when it is released."
    )
    waiting_for = models.PositiveIntegerField(
        default=0, help_text="Dependencies not yet finished; it is released when this reaches 0."
    )
    key_held = models.BooleanField(
        default=False,
        help_text="Released, but another job holds its unique key: it is queued once that job leaves scope.",
    )

    class Meta:
        ordering = ["workflow", "position"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "name"], name="bourbon_step_name"),
            models.UniqueConstraint(fields=["workflow", "position"], name="bourbon_step_position"),
        ]
        indexes = [
            models.Index(fields=["workflow"], condition=Q(key_held=True), name="bourbon_step_key_held"),
        ]

    def __str__(self) -> str:
        return self.name


class StepDependency(models.Model):
    """``step`` waits for ``after``."""

    step = models.ForeignKey(
        WorkflowStep, on_delete=models.DB_CASCADE, related_name="dependencies", db_index=False
    )
    after = models.ForeignKey(WorkflowStep, on_delete=models.DB_CASCADE, related_name="dependents")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["step", "after"], name="bourbon_step_dependency")]

    def __str__(self) -> str:
        return f"{self.step_id} after {self.after_id}"
