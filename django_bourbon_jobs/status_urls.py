"""The URL a ``202 Accepted`` reply points at: where the job's status can be read.

``STATUS_URL_NAME`` names a URL that takes the job's id as ``job_id`` or as ``pk``, so the
project's own status view and the API's detail route (``bourbon_jobs_api:job-detail``) both
work. Unset, replies point at the API's detail route when the project mounts the API.
"""

from __future__ import annotations

from django.urls import NoReverseMatch, reverse

API_DETAIL = "bourbon_jobs_api:job-detail"
"""The API's status route (``django_bourbon_jobs.api.urls``), used when ``STATUS_URL_NAME`` is unset."""


def reverse_job_url(name: str, job_id: str) -> str:
    """The path of URL ``name`` for ``job_id``; raises ``NoReverseMatch`` if it takes neither argument."""
    try:
        return reverse(name, kwargs={"job_id": job_id})
    except NoReverseMatch:
        return reverse(name, kwargs={"pk": job_id})


def api_status_path(job_id: str) -> str | None:
    """The API's status path for ``job_id``, or ``None`` when the project does not mount the API."""
    try:
        return reverse(API_DETAIL, kwargs={"pk": job_id})
    except NoReverseMatch:
        return None
