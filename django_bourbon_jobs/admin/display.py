"""How a job's fields read in the admin: status badges, durations, JSON, errors, the timeline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.safestring import SafeString

from django_bourbon_jobs.models import Job, JobStatus


def status_badge(status: str) -> SafeString:
    """Colour plus the status name as text: never colour alone."""
    return format_html(
        '<span class="bourbon-status bourbon-status-{}">{}</span>', status, JobStatus(status).label
    )


def format_duration(delta: timedelta | None) -> str:
    if delta is None:
        return "—"
    seconds = delta.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def compact_time(at: datetime | None) -> SafeString | str:
    """A time in a narrow column: the date over the time, to the second, in the current time zone."""
    if at is None:
        return "—"
    local = timezone.localtime(at)
    return format_html(
        '<time datetime="{}">{}<br>{}</time>', at.isoformat(), f"{local:%Y-%m-%d}", f"{local:%H:%M:%S}"
    )


def job_duration(job: Job) -> timedelta | None:
    if job.started_at is None or job.finished_at is None:
        return None
    return job.finished_at - job.started_at


PREVIEW_CHARS = 10_000
"""Characters of a payload, result or progress shown on a job's page; the rest is one link away."""
INDENT_DEPTH = 20
"""Deeper JSON is shown compact: indented, its text grows with the square of its depth."""


def json_depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (without recursion: it may be very deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def json_text(value: Any) -> str:
    """``value`` as JSON text: indented unless it nests past ``INDENT_DEPTH``."""
    try:
        if json_depth(value) <= INDENT_DEPTH:
            return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
        return json.dumps(value, ensure_ascii=False, default=str)
    except RecursionError:
        return "(nested too deeply to show as text)"


def pretty_json(value: Any, full_url: str = "") -> SafeString:
    """JSON in a ``<pre>``, cut at ``PREVIEW_CHARS`` with a link to the whole; the text is escaped."""
    text = json_text(value)
    if len(text) <= PREVIEW_CHARS:
        return format_html('<pre class="bourbon-json">{}</pre>', text)
    return format_html(
        '<pre class="bourbon-json">{}…</pre><p><a href="{}">Show all ({} characters)</a></p>',
        text[:PREVIEW_CHARS],
        full_url,
        f"{len(text):,}",
    )


def render_errors(job: Job) -> SafeString:
    """Every attempt's error, newest first, each with its full traceback."""
    return render_to_string("admin/bourbon_jobs/job/errors.html", {"errors": list(reversed(job.errors))})


@dataclass(frozen=True)
class Event:
    at: datetime | None
    label: str
    detail: str = ""


def timeline(job: Job) -> list[Event]:
    """Enqueued, each failed attempt, the current attempt's start, the end: oldest first."""
    events = [Event(job.enqueued_at, "Enqueued", f"queue {job.queue_name}, priority {job.priority}")]
    if job.started_at and job.started_at != job.last_attempted_at:
        events.append(Event(job.started_at, "First attempt started"))
    for error in job.errors:
        detail = f"{error.get('exception_class_path', '')}: {error.get('message', '')}"
        worker = error.get("worker_id") or "unknown worker"
        title = f"Attempt {error.get('attempt', '?')} failed on {worker}"
        events.append(Event(_parse(error.get("at")), title, detail))
    if job.last_attempted_at and job.status != JobStatus.QUEUED:
        events.append(Event(job.last_attempted_at, f"Attempt {job.attempts} started", job.worker_id))
    if job.finished_at:
        events.append(Event(job.finished_at, JobStatus(job.status).label, ""))
    return sorted(events, key=lambda event: (event.at is None, event.at or job.enqueued_at))


def render_timeline(job: Job) -> SafeString:
    return render_to_string("admin/bourbon_jobs/job/timeline.html", {"events": timeline(job)})


def _parse(value: object) -> datetime | None:
    return parse_datetime(value) if isinstance(value, str) else None
