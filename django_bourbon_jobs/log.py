"""One log line per job state change, between Django's ``django.tasks`` logger and ours.

Django's log receivers already report each enqueue (DEBUG), each attempt's start and a
success (INFO) on ``django.tasks``: ours does not say those again, so no change is printed
twice. The ``django_bourbon_jobs`` logger reports what Django has no words for (a retry, a
rescue, a cancel, a retry asked for by hand) and a failure with its reason. Each record
carries ``job_id``, ``task``, ``queue``, ``status``, ``attempt`` and ``event`` as ``extra``
fields, so JSON formatters and error trackers can index them; ``retrying`` and ``failed``
add ``exception_class`` and ``error`` (its message), the last attempt's error.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django_bourbon_jobs.models import Job, Workflow

logger = logging.getLogger("django_bourbon_jobs")

_LEVELS = {"failed": logging.ERROR, "retrying": logging.WARNING, "rescued": logging.WARNING}
SAID_BY_DJANGO = frozenset({"queued", "running", "succeeded"})
"""Events Django's receivers log on ``django.tasks`` (enqueued, RUNNING, SUCCESSFUL)."""
WITH_REASON = frozenset({"retrying", "failed", "rescued"})


def job_event(job: Job, event: str, **extra: Any) -> None:
    level = _LEVELS.get(event, logging.INFO)
    if event in SAID_BY_DJANGO or not logger.isEnabledFor(level):
        return
    if event in WITH_REASON and job.errors:
        last = job.errors[-1]
        extra = {"exception_class": last.get("exception_class_path"), "error": last.get("message"), **extra}
    fields = {
        "job_id": str(job.id),
        "task": job.task_path,
        "queue": job.queue_name,
        "status": job.status,
        "attempt": job.attempts,
        "event": event,
        **extra,
    }
    detail = " ".join(f"{key}={_shown(value)}" for key, value in fields.items())
    logger.log(level, "job %s", detail, extra=fields)


def _shown(value: Any) -> str:
    """A value as the line shows it: quoted when it holds spaces, so the line still splits on them."""
    text = str(value)
    return repr(text) if any(char.isspace() for char in text) else text


def workflow_event(workflow: Workflow, event: str, **extra: Any) -> None:
    """One line per workflow state change, with ``workflow_id``, ``workflow``, ``status`` and ``progress``."""
    level = logging.ERROR if event == "failed" else logging.INFO
    if not logger.isEnabledFor(level):
        return
    fields = {
        "workflow_id": str(workflow.pk),
        "workflow": workflow.name,
        "status": workflow.status,
        "progress": f"{workflow.steps_finished}/{workflow.step_count}",
        "event": event,
        **extra,
    }
    detail = " ".join(f"{key}={value}" for key, value in fields.items())
    logger.log(level, "workflow %s", detail, extra=fields)
