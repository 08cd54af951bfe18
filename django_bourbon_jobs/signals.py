"""Signals of our own, beside Django's ``task_enqueued``/``task_started``/``task_finished``."""

from django.dispatch import Signal

job_finished = Signal()
"""Sent with ``job=<Job>`` once a job's final state (succeeded, failed, cancelled) is stored."""

job_retried = Signal()
"""Sent with ``job=<Job>`` once a failed or cancelled job is queued again (``operations.retry``)."""

workflow_finished = Signal()
"""Sent with ``workflow=<Workflow>`` once every step of a workflow has finished (its status is final)."""
