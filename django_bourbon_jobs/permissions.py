"""Who sees and acts on which job: one model, the same in the API, the streams and the admin.

- A user always sees, cancels and retries the jobs they dispatched (and the workflows:
  a workflow, like each of its steps, belongs to whoever dispatched it).
- ``bourbon_jobs.view_job`` lets them see everyone's jobs, with tracebacks.
- ``bourbon_jobs.retry_job`` and ``bourbon_jobs.cancel_job`` let them retry and cancel
  jobs that are not theirs (seeing them still takes ``view_job``).

Only model permissions count (an active superuser has them all): being staff opens the
admin site, as for any Django admin, but grants nothing on jobs by itself. A job the
caller may not see answers as a missing one would, so ids leak nothing.
"""

from __future__ import annotations

from typing import Any, Literal

from django.db.models import QuerySet

from django_bourbon_jobs.models import Job, JobQuerySet, Workflow

VIEW_ALL = "bourbon_jobs.view_job"
Action = Literal["retry", "cancel"]


def can_view_all(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False) and user.has_perm(VIEW_ALL))


def can_see_tracebacks(user: Any) -> bool:
    """Tracebacks show the server's code: for those who see everyone's jobs, the operators."""
    return can_view_all(user)


def can_act_on_all(user: Any, action: Action) -> bool:
    return bool(getattr(user, "is_authenticated", False) and user.has_perm(f"bourbon_jobs.{action}_job"))


def owns(user: Any, job: Job | Workflow) -> bool:
    return job.dispatched_by_id is not None and job.dispatched_by_id == getattr(user, "pk", None)


def can_act(user: Any, job: Job | Workflow, action: Action) -> bool:
    """May ``user`` retry or cancel ``job`` (or a workflow), which they can see?"""
    return owns(user, job) or can_act_on_all(user, action)


def visible_jobs(user: Any, jobs: QuerySet[Job] | None = None) -> JobQuerySet:
    """``jobs`` (all by default) narrowed to those ``user`` may see: none when anonymous."""
    queryset = Job.objects.all() if jobs is None else jobs
    if not getattr(user, "is_authenticated", False):
        return queryset.none()  # type: ignore[return-value]
    if can_view_all(user):
        return queryset  # type: ignore[return-value]
    return queryset.filter(dispatched_by=user)  # type: ignore[return-value]


def actionable_jobs[M: (Job, Workflow)](user: Any, jobs: QuerySet[M], action: Action) -> QuerySet[M]:
    """``jobs`` (or workflows) narrowed to those ``user`` may retry or cancel."""
    if can_act_on_all(user, action):
        return jobs
    return jobs.filter(dispatched_by=user) if getattr(user, "is_authenticated", False) else jobs.none()


def visible_workflows(user: Any, workflows: QuerySet[Workflow] | None = None) -> QuerySet[Workflow]:
    """``workflows`` (all by default) narrowed to those ``user`` may see, by the rules for jobs."""
    queryset = Workflow.objects.all() if workflows is None else workflows
    if not getattr(user, "is_authenticated", False):
        return queryset.none()
    if can_view_all(user):
        return queryset
    return queryset.filter(dispatched_by=user)
