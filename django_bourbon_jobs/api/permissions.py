"""The API's side of :mod:`django_bourbon_jobs.permissions`: the DRF permission.

A job the caller may not see is not in their queryset at all, so its id answers
``404``, never ``403``: ids leak nothing.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from django_bourbon_jobs.permissions import can_act


class JobPermission(BasePermission):
    """Anyone who sees a job may read it; ``cancel`` and ``retry`` need :func:`~..permissions.can_act`."""

    message = "You may not do this to a job you did not dispatch."

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        action = getattr(view, "action", None)
        if action in ("cancel", "retry"):
            return can_act(request.user, obj, action)
        return True
