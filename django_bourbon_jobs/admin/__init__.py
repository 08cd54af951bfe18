"""The operators' admin: jobs (read-only, with retry/cancel/delete actions), failures, workers, a dashboard,
limits and circuit breakers.

Importing this package registers :class:`~.jobs.JobAdmin`, :class:`~.limits.LimitAdmin` and
:class:`~.workers.WorkerAdmin`
on the default admin site (``admin.autodiscover()`` does it for you).
"""

from django_bourbon_jobs.admin.jobs import JobAdmin
from django_bourbon_jobs.admin.limits import LimitAdmin
from django_bourbon_jobs.admin.workers import WorkerAdmin

__all__ = ["JobAdmin", "LimitAdmin", "WorkerAdmin"]
