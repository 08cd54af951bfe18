"""Durable background jobs for Django's Tasks framework.

The names below are loaded when first used, so importing the package (as Django
does while it reads ``INSTALLED_APPS``) loads no models, worker, API or admin code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django_bourbon_jobs.dispatch import dispatch_async, dispatch_many, get_result
    from django_bourbon_jobs.exceptions import Fail, Retry
    from django_bourbon_jobs.operations import cancel, cancel_queued, retry_jobs

_HOMES = {
    "dispatch_async": "django_bourbon_jobs.dispatch",
    "dispatch_many": "django_bourbon_jobs.dispatch",
    "get_result": "django_bourbon_jobs.dispatch",
    "cancel": "django_bourbon_jobs.operations",
    "cancel_queued": "django_bourbon_jobs.operations",
    "retry_jobs": "django_bourbon_jobs.operations",
    "Fail": "django_bourbon_jobs.exceptions",
    "Retry": "django_bourbon_jobs.exceptions",
}

__all__ = [
    "Fail",
    "Retry",
    "__version__",
    "cancel",
    "cancel_queued",
    "dispatch_async",
    "dispatch_many",
    "get_result",
    "retry_jobs",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'django_bourbon_jobs' has no attribute {name!r}")
