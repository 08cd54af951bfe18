"""The operators' admin: jobs (read-only, with retry/cancel/delete actions), failures, workers, a dashboard,
and periodic schedules.

Importing this package registers :class:`~.jobs.JobAdmin`, :class:`~.workers.WorkerAdmin` and
:class:`~.periodic.PeriodicScheduleAdmin` on the default admin site (``admin.autodiscover()`` does it).
"""

from django_bourbon_jobs.admin.jobs import JobAdmin
from django_bourbon_jobs.admin.periodic import PeriodicScheduleAdmin
from django_bourbon_jobs.admin.workers import WorkerAdmin

__all__ = ["JobAdmin", "PeriodicScheduleAdmin", "WorkerAdmin"]
