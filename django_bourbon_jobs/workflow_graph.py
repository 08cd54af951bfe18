"""A workflow's steps and what each waits for, read in two queries: what the API, its streams and the
admin show of a workflow."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django_bourbon_jobs.models import StepDependency, Workflow, WorkflowStep


@dataclass
class StepView:
    """One step as shown: its name, its job's id and state, and the names of the steps it waits for."""

    name: str
    job_id: Any
    status: str
    position: int
    on_failure: str
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    after: list[str] = field(default_factory=list)


def read_steps(workflow: Workflow) -> list[StepView]:
    """The workflow's steps in the order they were added."""
    using = workflow._state.db or "default"
    rows = (
        WorkflowStep.objects.db_manager(using)
        .filter(workflow=workflow)
        .order_by("position")
        .values_list(
            "pk",
            "name",
            "position",
            "on_failure",
            "job__status",
            "job__attempts",
            "job__started_at",
            "job__finished_at",
        )
    )
    steps = [StepView(row[1], row[0], row[4], row[2], row[3], row[5], row[6], row[7]) for row in rows]
    waits_for: dict[Any, list[str]] = defaultdict(list)
    edges = StepDependency.objects.db_manager(using).filter(step__workflow=workflow)
    for step_id, after in edges.order_by("after__position").values_list("step_id", "after__name"):
        waits_for[step_id].append(after)
    for step in steps:
        step.after = waits_for[step.job_id]
    return steps
