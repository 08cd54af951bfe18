"""The operators' admin: jobs (read-only, with retry/cancel/delete actions), failures, workers, a dashboard,
and periodic schedules, and workflows (their graph, retry and cancel).

Importing this package registers :class:`~.jobs.JobAdmin`, :class:`~.workers.WorkerAdmin`,
:class:`~.periodic.PeriodicScheduleAdmin` and :class:`~.workflows.WorkflowAdmin` on the default admin
site (``admin.autodiscover()`` does it).
"""

from django_bourbon_jobs.admin.jobs import JobAdmin
from django_bourbon_jobs.admin.periodic import PeriodicScheduleAdmin
from django_bourbon_jobs.admin.workers import WorkerAdmin
from django_bourbon_jobs.admin.workflows import WorkflowAdmin

__all__ = ["JobAdmin", "PeriodicScheduleAdmin", "WorkerAdmin", "WorkflowAdmin"]
