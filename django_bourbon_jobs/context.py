"""The context a ``takes_context=True`` job receives: Django's, plus progress, cancellation and,
for a workflow step, its dependencies' results."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.tasks import TaskContext
from django.utils import timezone

from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.events import publish
from django_bourbon_jobs.exceptions import JobCancelled, StepFailed
from django_bourbon_jobs.serialization import storable_text


@dataclass
class ProgressReporter:
    """Stores a job's progress, at most once per ``PROGRESS_INTERVAL``; the latest rides with the outcome."""

    job: Any
    worker_id: str
    _last_write: float = float("-inf")

    def report(self, current: float, total: float | None, message: str) -> None:
        if not isinstance(current, int | float) or (total is not None and not isinstance(total, int | float)):
            raise TypeError("report_progress() takes numbers: current, and total or None.")
        self.job.progress = {
            "current": current,
            "total": total,
            "message": storable_text(str(message)),
            "at": timezone.now().isoformat(),
        }
        if time.monotonic() - self._last_write >= get_settings().PROGRESS_INTERVAL:
            self._last_write = time.monotonic()
            type(self.job).objects.held_by(self.worker_id).filter(pk=self.job.pk).update(
                progress=self.job.progress
            )
            publish.publish_job_events([self.job])


@dataclass(frozen=True, slots=True, kw_only=True)
class JobContext(TaskContext):  # type: ignore[misc]  # Django's TaskContext is frozen; its stub says not
    progress: ProgressReporter = field(repr=False)
    cancel_flag: threading.Event = field(repr=False)
    loaded_dependencies: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """Filled on the first read of :attr:`dependency_results`."""

    @property
    def dependency_results(self) -> dict[str, Any]:
        """A workflow step's dependencies by step name: the return value of each that succeeded, and a
        :class:`~django_bourbon_jobs.exceptions.StepFailed` for each that did not (only an
        ``on_failure="continue"`` step runs after one did not). Empty for a job outside a workflow.

        Read from the database on first use, so a step that does not look costs nothing.
        """
        job = self.progress.job
        if not self.loaded_dependencies and getattr(job, "workflow_id", None) is not None:
            self.loaded_dependencies.update(dependency_results(job.pk))
        return dict(self.loaded_dependencies)

    def report_progress(self, current: float, total: float | None = None, message: str = "") -> None:
        """Record how far the job is; readers see it within ``PROGRESS_INTERVAL``."""
        self.progress.report(current, total, message)

    @property
    def cancel_requested(self) -> bool:
        """True once someone asked this job to stop; finish up and return (or raise)."""
        return self.cancel_flag.is_set()

    def raise_if_cancel_requested(self) -> None:
        if self.cancel_flag.is_set():
            raise JobCancelled("The job was asked to stop.")


def dependency_results(job_id: Any) -> dict[str, Any]:
    """What :attr:`JobContext.dependency_results` shows for the step ``job_id``."""
    from django_bourbon_jobs.models import JobStatus, StepDependency

    edges = StepDependency.objects.filter(step_id=job_id).values_list(
        "after__name", "after__job__status", "after__job__return_value", "after__job__errors"
    )
    return {
        name: value if status == JobStatus.SUCCEEDED else StepFailed(name, status, errors)
        for name, status, value, errors in edges
    }
