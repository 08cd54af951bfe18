"""The package's errors: one root, and the two a job raises to steer its retries."""

from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured


class BourbonJobsError(Exception):
    """Root of every error this package raises."""


class ConfigurationError(BourbonJobsError, ImproperlyConfigured):
    """A ``BOURBON_JOBS`` value or a backend option is invalid."""


class InvalidPayload(BourbonJobsError, TypeError, ValueError):
    """A payload (task arguments) cannot be stored as JSON.

    A ``TypeError``, as Django raises for an unsupported type, and a ``ValueError``,
    as it raises for bytes that are not UTF-8.
    """


class InvalidReturnValue(BourbonJobsError, TypeError):
    """A job returned a value Django accepts but no database stores: NaN, an infinity, NUL, a lone surrogate.

    A value Django itself refuses fails with Django's own ``TypeError`` ("Unsupported type").
    """


class UnknownTask(BourbonJobsError, LookupError):
    """A job names a task path that does not import to a Task."""


class InvalidCallbackURL(BourbonJobsError, ValueError):
    """A callback URL is malformed or its host is not in ``WEBHOOK_ALLOWED_HOSTS``."""


class JobCancelled(BourbonJobsError):
    """Raised in a running job that was asked to stop; the job ends ``cancelled``."""


class JobTimeout(BourbonJobsError):
    """An attempt ran longer than its task's ``timeout``."""


class WorkerLost(BourbonJobsError):
    """The worker running an attempt died or stopped before recording an outcome."""


class OutcomeNotStored(BourbonJobsError):
    """The database kept refusing an attempt's outcome; the job failed with this error instead."""


class Retry(BourbonJobsError):
    """Raised by a job to ask for another attempt after ``delay`` seconds.

    The attempt counts towards ``max_attempts``; with none left the job fails.
    """

    def __init__(self, delay: float | timedelta = 0, message: str = "") -> None:
        if isinstance(delay, timedelta):
            delay = delay.total_seconds()
        if delay < 0:
            raise ValueError("Retry delay must not be negative.")
        self.delay = float(delay)
        super().__init__(message or f"retry requested in {self.delay:g}s")


class Fail(BourbonJobsError):
    """Raised by a job to fail at once, whatever attempts it has left."""


class WorkflowError(BourbonJobsError, ValueError):
    """A workflow that cannot be dispatched as built: a cycle, an unknown or repeated step name.

    Raised by ``Workflow.add`` or ``Workflow.dispatch`` before anything is written.
    """


class WorkflowDoesNotExist(BourbonJobsError, LookupError):
    """``get_workflow()`` was given an id no workflow has."""


class StepFailed(BourbonJobsError):
    """A dependency that did not succeed, as ``context.dependency_results`` shows it to an
    ``on_failure="continue"`` step: its ``status`` (``failed`` or ``cancelled``) and its ``errors``.
    """

    def __init__(self, step: str, status: str, errors: list[dict[str, object]]) -> None:
        self.step = step
        self.status = status
        self.errors = errors
        last = errors[-1] if errors else {}
        self.exception_class_path = str(last.get("exception_class_path", ""))
        detail = f": {self.exception_class_path}: {last.get('message', '')}" if last else ""
        super().__init__(f"Step {step!r} {status}{detail}")
