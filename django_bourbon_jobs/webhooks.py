"""Completion webhooks: the host allow-list, the signature, and the delivery job.

When a job with a ``callback_url`` ends ``succeeded`` or ``failed``, a receiver of
``job_finished`` dispatches :data:`deliver_webhook`, itself a job: it POSTs the
final state as JSON, signed with ``WEBHOOK_SECRET``, and is retried with the
default backoff until the receiver answers ``2xx``. Redirects are not followed.

The signature header reads ``Bourbon-Signature: t=<unix seconds>,v1=<hex>``,
where ``<hex>`` is ``HMAC-SHA256(WEBHOOK_SECRET, f"{t}.{body}")``; receivers
check it with :func:`verify_signature` (or its few lines, in any language).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from django.dispatch import receiver
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS

from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.exceptions import BourbonJobsError, Fail, InvalidCallbackURL
from django_bourbon_jobs.signals import job_finished
from django_bourbon_jobs.tasks import BourbonTask

logger = logging.getLogger("django_bourbon_jobs.webhooks")

SIGNATURE_HEADER = "Bourbon-Signature"
DEFAULT_TOLERANCE = 300.0
"""Seconds a signature's timestamp may be off before :func:`verify_signature` rejects it."""
NOTIFIED_STATUSES = frozenset({"succeeded", "failed"})
DELIVERY_ATTEMPTS = 8


class WebhookDeliveryFailed(BourbonJobsError):
    """The receiver did not answer ``2xx`` (or could not be reached); the delivery is retried."""


def host_allowed(host: str, allowed: list[str] | tuple[str, ...]) -> bool:
    """``ALLOWED_HOSTS`` matching without the ``"*"`` wildcard: exact, or ``.domain`` and below."""
    host = host.lower().rstrip(".")
    for pattern in (p.lower() for p in allowed):
        if pattern.startswith(".") and (host == pattern[1:] or host.endswith(pattern)):
            return True
        if host == pattern:
            return True
    return False


def check_callback_url(url: str) -> None:
    """Raise :class:`InvalidCallbackURL` unless ``url`` may be called back.

    It must be ``http(s)``, carry no credentials, and name a host in
    ``WEBHOOK_ALLOWED_HOSTS`` and a port in ``WEBHOOK_ALLOWED_PORTS``; and
    ``WEBHOOK_SECRET`` must be set, since unsigned webhooks are never sent.
    """
    conf = get_settings()
    if not conf.WEBHOOK_SECRET:
        raise InvalidCallbackURL("Webhooks are disabled: set BOURBON_JOBS['WEBHOOK_SECRET'].")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError as exc:
        raise InvalidCallbackURL(f"{url!r} is not a valid URL: {exc}.") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidCallbackURL(f"{url!r} is not an http(s) URL with a host.")
    if parts.username is not None or parts.password is not None:
        raise InvalidCallbackURL("Callback URLs must not carry credentials.")
    if not host_allowed(host, tuple(conf.WEBHOOK_ALLOWED_HOSTS)):
        raise InvalidCallbackURL(f"Host {host!r} is not in BOURBON_JOBS['WEBHOOK_ALLOWED_HOSTS'].")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if port not in conf.WEBHOOK_ALLOWED_PORTS:
        raise InvalidCallbackURL(f"Port {port} is not in BOURBON_JOBS['WEBHOOK_ALLOWED_PORTS'].")


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Bourbon-Signature`` header value for ``body`` sent at ``timestamp``."""
    message = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(
    secret: str, body: bytes, header: str, tolerance: float = DEFAULT_TOLERANCE, now: float | None = None
) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` and its timestamp is within ``tolerance``."""
    try:
        fields = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def final_state(job: Any) -> dict[str, Any]:
    """The body of a completion webhook: what the status endpoint shows, without tracebacks."""

    def iso(value: Any) -> str | None:
        return value.isoformat() if value else None

    return {
        "event": f"job.{job.status}",
        "job": {
            "job_id": str(job.pk),
            "task": job.task_path,
            "queue_name": job.queue_name,
            "status": job.status,
            "attempts": job.attempts,
            "max_attempts": job.max_attempts,
            "result": job.return_value if job.status == "succeeded" else None,
            "errors": [
                {"exception_class": e.get("exception_class_path", ""), "message": e.get("message", "")}
                for e in job.errors
            ],
            "progress": job.progress,
            "enqueued_at": iso(job.enqueued_at),
            "started_at": iso(job.started_at),
            "finished_at": iso(job.finished_at),
        },
    }


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        raise WebhookDeliveryFailed(
            f"The receiver redirected ({code}) to {newurl}; redirects are not followed."
        )


_opener = urllib.request.build_opener(_NoRedirects)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST ``body``; the status code, or :class:`WebhookDeliveryFailed` for anything but 2xx."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with _opener.open(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        raise WebhookDeliveryFailed(f"The receiver answered {exc.code} {exc.reason}.") from None
    except (urllib.error.URLError, OSError) as exc:
        raise WebhookDeliveryFailed(f"The receiver could not be reached: {exc}.") from None


def deliver_webhook(payload: dict[str, Any]) -> dict[str, Any]:
    """POST one job's final state to its callback URL; raises to be retried."""
    url = payload["url"]
    try:
        check_callback_url(url)
    except InvalidCallbackURL as exc:
        raise Fail(str(exc)) from None  # the settings changed since dispatch: never retried
    conf = get_settings()
    body = encode(payload["body"])
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "django-bourbon-jobs webhook",
        SIGNATURE_HEADER: sign(conf.WEBHOOK_SECRET, body, int(time.time())),
        "Bourbon-Event": payload["body"]["event"],
        "Bourbon-Job-Id": payload["body"]["job"]["job_id"],
    }
    status = post(url, body, headers, conf.WEBHOOK_TIMEOUT)
    return {"url": url, "status_code": status}


deliver_webhook = BourbonTask(  # type: ignore[assignment]  # @task, without needing the default backend's class
    func=deliver_webhook, backend=DEFAULT_TASK_BACKEND_ALIAS, max_attempts=DELIVERY_ATTEMPTS
)
"""The delivery job: ``{"url", "body"}``; visible to the job's dispatcher like their other jobs."""


def dispatch_delivery(job: Any) -> Any:
    """Queue the delivery of ``job``'s final state, on the job's own queue."""
    from django_bourbon_jobs.dispatch import dispatch_async

    return dispatch_async(
        deliver_webhook,  # type: ignore[arg-type]
        {"url": job.callback_url, "body": final_state(job)},
        queue_name=job.queue_name,
        dispatched_by=job.dispatched_by if job.dispatched_by_id else None,
    )


@receiver(job_finished, dispatch_uid="django_bourbon_jobs.webhooks")
def _on_job_finished(sender: Any, job: Any, **kwargs: Any) -> None:
    if not job.callback_url or job.status not in NOTIFIED_STATUSES:
        return
    try:
        dispatch_delivery(job)
    except Exception:  # a webhook must never break the worker that finished the job
        logger.exception("Could not queue the webhook of job %s", job.pk, extra={"job_id": str(job.pk)})
