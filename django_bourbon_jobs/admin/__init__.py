"""The operators' admin: jobs (read-only, with retry/cancel/delete actions), failures, workers, a dashboard,
and periodic schedules, workflows (their graph, retry and cancel), limits and circuit breakers.

Importing this package registers :class:`~.jobs.JobAdmin`, :class:`~.workers.WorkerAdmin`,
:class:`~.periodic.PeriodicScheduleAdmin`, :class:`~.workflows.WorkflowAdmin` and
:class:`~.limits.LimitAdmin` on the default admin site (``admin.autodiscover()`` does it).
"""

from django_bourbon_jobs.admin.jobs import JobAdmin
from django_bourbon_jobs.admin.limits import LimitAdmin
from django_bourbon_jobs.admin.periodic import PeriodicScheduleAdmin
from django_bourbon_jobs.admin.workers import WorkerAdmin
from django_bourbon_jobs.admin.workflows import WorkflowAdmin

__all__ = ["JobAdmin", "LimitAdmin", "PeriodicScheduleAdmin", "WorkerAdmin", "WorkflowAdmin"]
