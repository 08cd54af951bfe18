"""Build many new job rows at once, cheaply; the store (:mod:`~django_bourbon_jobs.store`) writes them."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.db.models.base import ModelState

from django_bourbon_jobs.ids import uuid7s

if TYPE_CHECKING:  # the backend imports this module, and must import before the app registry is ready
    from django_bourbon_jobs.models import Job

INSERT_BATCH = 1000
"""Rows per INSERT statement where COPY is not available."""


VARYING = ("id", "args", "kwargs")
"""The columns in which the jobs of one ``dispatch_many`` call differ."""


@contextmanager
def collector_paused() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector while a bulk dispatch builds its objects.

    Building tens of thousands of jobs and results, none of them in a reference
    cycle, set off collections that scanned every live object again and again:
    about a third of ``dispatch_many``'s time. The collector is process-wide, so it
    is paused only for the call and resumed after it (if it was on), whatever
    happens; whatever became garbage meanwhile is collected then.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def clone_jobs(template: Job, calls: Iterable[tuple[Any, Any]]) -> list[Job]:
    """One unsaved Job per ``(args, kwargs)``, equal to ``template`` but for a fresh id and those.

    ``Model.__init__`` resolves every field and default one by one, which cost
    more per job than COPY does; a copy of the template's attributes does not.
    """
    model = type(template)
    base = {name: value for name, value in template.__dict__.items() if name != "_state"}
    jobs = []
    for args, kwargs in calls:
        job = model.__new__(model)
        job.__dict__.update(base)
        job._state = ModelState()
        job.args, job.kwargs = args, kwargs
        jobs.append(job)
    for job, job_id in zip(jobs, uuid7s(len(jobs)), strict=True):
        job.id = job_id
    return jobs
