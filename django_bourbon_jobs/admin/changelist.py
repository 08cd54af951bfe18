"""The job list's query: heavy JSON columns left out, the count bounded."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest

from django_bourbon_jobs.admin.paginator import CappedCountPaginator
from django_bourbon_jobs.models import Job

HEAVY_FIELDS = ("args", "kwargs", "return_value", "errors", "progress")
"""Payloads, results and tracebacks: never needed to draw a row of the list."""


NO_MATCH_FOR_NUL = "A filter or the search held a NUL character, which no job can match."


class JobChangeList(ChangeList):
    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Job]:
        """An empty list with a message where a parameter holds a NUL (PostgreSQL refuses it: a 500)."""
        if any("\x00" in value for values in request.GET.lists() for value in values[1]):
            messages.warning(request, NO_MATCH_FOR_NUL)
            return self.root_queryset.none()
        return super().get_queryset(request, exclude_parameters).defer(*HEAVY_FIELDS)

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        paginator = self.paginator
        self.result_count_label = (
            paginator.count_label if isinstance(paginator, CappedCountPaginator) else str(self.result_count)
        )
