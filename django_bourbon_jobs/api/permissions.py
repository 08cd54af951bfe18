"""Who sees and acts on which job: owners their own, staff every one.

A job the caller may not see is not in their queryset at all, so its id
answers ``404``, never ``403``: ids leak nothing.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from django_bourbon_jobs.models import Job, JobQuerySet

SEE_ALL_PERMISSION = "bourbon_jobs.view_job"
"""Besides staff, users with this permission see (but do not act on) every job."""


def can_see_all(user: Any) -> bool:
    return bool(user.is_staff or user.has_perm(SEE_ALL_PERMISSION))


def can_see_tracebacks(user: Any) -> bool:
    return bool(getattr(user, "is_staff", False))


def visible_jobs(user: Any) -> JobQuerySet:
    """The jobs ``user`` may see: none when anonymous, their own, or all for staff."""
    if not getattr(user, "is_authenticated", False):
        return Job.objects.none()
    if can_see_all(user):
        return Job.objects.all()
    return Job.objects.filter(dispatched_by=user)


class JobPermission(BasePermission):
    """Anyone who sees a job may read it; acting on someone else's needs staff or the model permission.

    ``cancel`` needs ``bourbon_jobs.cancel_job``, ``retry`` needs ``bourbon_jobs.retry_job``
    (both granted to staff here; the owner needs neither).
    """

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        if obj.dispatched_by_id is not None and obj.dispatched_by_id == request.user.pk:
            return True
        action = getattr(view, "action", None)
        if action in ("cancel", "retry"):
            return bool(request.user.is_staff or request.user.has_perm(f"bourbon_jobs.{action}_job"))
        return True
