"""Completion webhooks: the host allow-list, the signature, and the delivery job.

When a job with a ``callback_url`` ends ``succeeded`` or ``failed``, a receiver of
``job_finished`` dispatches :data:`deliver_webhook`, itself a job: it POSTs the
final state as JSON, signed with ``WEBHOOK_SECRET``, and is retried with the
default backoff until the receiver answers ``2xx``. Redirects are not followed.

The signature header reads ``Bourbon-Signature: t=<unix seconds>,v1=<hex>,v2=<hex>``:
``v1`` is ``HMAC-SHA256(WEBHOOK_SECRET, f"{t}.{body}")``, and ``v2`` signs the
``Bourbon-Event`` and ``Bourbon-Job-Id`` headers too,
``HMAC-SHA256(WEBHOOK_SECRET, f"{t}.{event}.{job_id}.{body}")``; receivers check
them with :func:`verify_signature` (or its few lines, in any language).

**Not a port scanner.** A delivery goes only to an allowed host and port
(checked at dispatch and again at delivery), resolves the host once, refuses
private, loopback, link-local and other non-public addresses unless
``WEBHOOK_ALLOWED_NETWORKS`` lists them, and connects to the very address it
checked (no second lookup for DNS to answer differently). What went wrong is
not told to the dispatcher, who sees a delivery job's errors: each says only
:data:`NOT_DELIVERED`, and the reason (the status the receiver answered, a
refused or timed-out connection, a refused address) is in the error's
traceback, which only operators see (``view_job``, the admin).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import socket
import ssl
import time
from typing import Any, NoReturn
from urllib.parse import SplitResult, urlsplit

from django.dispatch import receiver
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS

from django_bourbon_jobs.callbacks import address_allowed, check_callback_url
from django_bourbon_jobs.conf import get_settings
from django_bourbon_jobs.dispatch import dispatch_async
from django_bourbon_jobs.exceptions import BourbonJobsError, Fail, InvalidCallbackURL
from django_bourbon_jobs.signals import job_finished
from django_bourbon_jobs.tasks import BourbonTask

logger = logging.getLogger("django_bourbon_jobs.webhooks")

SIGNATURE_HEADER = "Bourbon-Signature"
DEFAULT_TOLERANCE = 300.0
"""Seconds a signature's timestamp may be off before :func:`verify_signature` rejects it."""
NOTIFIED_STATUSES = frozenset({"succeeded", "failed"})
DELIVERY_ATTEMPTS = 8
NOT_DELIVERED = "The webhook was not delivered; operators can see why in the admin."
"""The only words a delivery's dispatcher sees about a failed attempt."""


class WebhookDeliveryFailed(BourbonJobsError):
    """The receiver did not answer ``2xx`` (or could not be reached); the delivery is retried.

    Its message is :data:`NOT_DELIVERED`; the reason is its cause, a :class:`DeliveryProblem`.
    """

    def __init__(self, message: str = NOT_DELIVERED) -> None:
        super().__init__(message)


class DeliveryProblem(BourbonJobsError):
    """Why an attempt failed, in the operator's words: kept in the traceback, not in the message."""


def _failed(detail: str) -> NoReturn:
    """Raise :class:`WebhookDeliveryFailed` from a :class:`DeliveryProblem` that says ``detail``."""
    raise WebhookDeliveryFailed() from DeliveryProblem(detail)


def resolve(host: str, port: int) -> str:
    """The one address a delivery connects to; :class:`WebhookDeliveryFailed` if any answer is refused.

    Every address the name resolves to must be allowed: a name that answers with a
    public and a private address is refused, not tried until the private one is reached.
    """
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        _failed(f"{host} could not be resolved: {exc}.")
    addresses = [ipaddress.ip_address(str(answer[4][0]).split("%")[0]) for answer in answers]
    refused = [str(address) for address in addresses if not address_allowed(address)]
    if refused or not addresses:
        _failed(
            f"{host} resolves to {', '.join(refused) or 'nothing'}, not a public address: list its "
            "network in BOURBON_JOBS['WEBHOOK_ALLOWED_NETWORKS'] to allow it."
        )
    return str(addresses[0])


def _digest(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(
    secret: str, body: bytes, timestamp: int, event: str | None = None, job_id: str | None = None
) -> str:
    """The ``Bourbon-Signature`` header value for ``body`` sent at ``timestamp``.

    With ``event`` and ``job_id`` (the ``Bourbon-Event`` and ``Bourbon-Job-Id`` headers)
    it carries ``v2`` as well, which signs them too.
    """
    header = f"t={timestamp},v1={_digest(secret, f'{timestamp}.'.encode() + body)}"
    if event is not None and job_id is not None:
        header += f",v2={_digest(secret, f'{timestamp}.{event}.{job_id}.'.encode() + body)}"
    return header


def verify_signature(
    secret: str,
    body: bytes,
    header: str,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
    *,
    event: str | None = None,
    job_id: str | None = None,
) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` and its timestamp is within ``tolerance``.

    Pass the ``Bourbon-Event`` and ``Bourbon-Job-Id`` headers as ``event`` and ``job_id``
    to check that they were signed too (``v2``); without them only the body is (``v1``).
    """
    try:
        fields = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    if event is not None or job_id is not None:
        expected = _digest(secret, f"{timestamp}.{event}.{job_id}.".encode() + body)
        return hmac.compare_digest(expected, fields.get("v2", ""))
    return hmac.compare_digest(_digest(secret, f"{timestamp}.".encode() + body), fields.get("v1", ""))


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


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to ``address``, whatever ``host`` (sent as ``Host``) resolves to now."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to ``address``; the certificate is checked against ``host`` (and sent as SNI)."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST ``body`` to the checked address of ``url``'s host: its 2xx status, or a failure to retry.

    Redirects are not followed; the answer's body is not read.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    address = resolve(host, port)
    kind = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    connection = kind(host, port, address, timeout)
    try:
        connection.request("POST", _target(parts), body=body, headers=headers)
        response = connection.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        _failed(f"The receiver at {address} could not be reached: {exc}.")
    finally:
        connection.close()
    if 300 <= response.status < 400:
        where = response.getheader("Location", "")
        _failed(f"The receiver redirected ({response.status}) to {where}; redirects are not followed.")
    if not 200 <= response.status < 300:
        _failed(f"The receiver answered {response.status} {response.reason}.")
    return int(response.status)


def _target(parts: SplitResult) -> str:
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def deliver_webhook(payload: dict[str, Any]) -> dict[str, Any]:
    """POST one job's final state to its callback URL; raises to be retried."""
    url = payload["url"]
    try:
        check_callback_url(url)
    except InvalidCallbackURL as exc:
        raise Fail(str(exc)) from None  # the settings changed since dispatch: never retried
    conf = get_settings()
    body = encode(payload["body"])
    event, job_id = payload["body"]["event"], payload["body"]["job"]["job_id"]
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "django-bourbon-jobs webhook",
        SIGNATURE_HEADER: sign(conf.WEBHOOK_SECRET, body, int(time.time()), event, job_id),
        "Bourbon-Event": event,
        "Bourbon-Job-Id": job_id,
    }
    status = post(url, body, headers, conf.WEBHOOK_TIMEOUT)
    return {"url": url, "status_code": status}


deliver_webhook = BourbonTask(  # type: ignore[assignment]  # @task, without needing the default backend's class
    func=deliver_webhook, backend=DEFAULT_TASK_BACKEND_ALIAS, max_attempts=DELIVERY_ATTEMPTS
)
"""The delivery job: ``{"url", "body"}``; visible to the job's dispatcher like their other jobs."""


def dispatch_delivery(job: Any) -> Any:
    """Queue the delivery of ``job``'s final state, on the job's own queue."""
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
