"""One structured log line per job state change, on the ``django_bourbon_jobs`` logger.

Each record carries ``job_id``, ``task``, ``queue``, ``status`` and ``attempt`` as
``extra`` fields, so JSON formatters and error trackers can index them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django_bourbon_jobs.models import Job, Workflow

logger = logging.getLogger("django_bourbon_jobs")

_LEVELS = {"failed": logging.ERROR, "retrying": logging.WARNING, "rescued": logging.WARNING}


def job_event(job: Job, event: str, **extra: Any) -> None:
    level = _LEVELS.get(event, logging.INFO)
    if not logger.isEnabledFor(level):
        return
    fields = {
        "job_id": str(job.id),
        "task": job.task_path,
        "queue": job.queue_name,
        "status": job.status,
        "attempt": job.attempts,
        "event": event,
        **extra,
    }
    detail = " ".join(f"{key}={value}" for key, value in fields.items())
    logger.log(level, "job %s", detail, extra=fields)


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
