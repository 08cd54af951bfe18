"""Durable background jobs for Django's Tasks framework."""

from django_bourbon_jobs.dispatch import cancel, cancel_queued, dispatch_async, dispatch_many, get_result
from django_bourbon_jobs.exceptions import Fail, Retry

__all__ = [
    "Fail",
    "Retry",
    "__version__",
    "cancel",
    "cancel_queued",
    "dispatch_async",
    "dispatch_many",
    "get_result",
]
__version__ = "0.1.0"
