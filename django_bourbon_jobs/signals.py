"""Signals of our own, beside Django's ``task_enqueued``/``task_started``/``task_finished``."""

from django.dispatch import Signal

job_finished = Signal()
"""Sent with ``job=<Job>`` once a job's final state (succeeded, failed, cancelled) is stored."""

job_retried = Signal()
"""Sent with ``job=<Job>`` once a failed or cancelled job is queued again (``operations.retry``)."""

workflow_finished = Signal()
"""Sent with ``workflow=<Workflow>`` once every step of a workflow has finished (its status is final)."""

circuit_opened = Signal()
"""Sent with ``key``, ``task_path``, ``until`` (no attempt starts before it), ``failures`` and
``reason`` once a task's circuit breaker opens (again, after a failed trial attempt)."""

circuit_closed = Signal()
"""Sent with ``key``, ``task_path``, ``failures`` and ``reason`` once a circuit closes: its trial
attempt succeeded, or an operator closed it (``operations.close_circuit``)."""
