"""Completion webhooks: delivered to a real local HTTP server, signed, retried, and only to allowed hosts."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from django_bourbon_jobs import dispatch_async, webhooks
from django_bourbon_jobs.callbacks import check_callback_url, host_allowed
from django_bourbon_jobs.exceptions import InvalidCallbackURL
from django_bourbon_jobs.models import Job, JobStatus
from django_bourbon_jobs.signals import job_finished
from django_bourbon_jobs.testing import drain
from django_bourbon_jobs.webhooks import (
    NOT_DELIVERED,
    SIGNATURE_HEADER,
    deliver_webhook,
    sign,
    verify_signature,
)
from tests import tasks
from tests.conftest import wait_until
from tests.factories import dispatched_id

SECRET = "tests-webhook-secret"
DELIVERY = deliver_webhook.module_path  # type: ignore[attr-defined]


class Receiver:
    """A local HTTP server that records each POST and answers with the next scripted status."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.delay = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                time.sleep(receiver.delay)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://attacker.test/steal")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def webhooks_connected() -> None:
    """Some tests clear job_finished's receivers; connecting again with the same uid is a no-op."""
    job_finished.connect(webhooks._on_job_finished, dispatch_uid="django_bourbon_jobs.webhooks")


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    server = Receiver()
    ports = [*settings.BOURBON_JOBS.get("WEBHOOK_ALLOWED_PORTS", (443, 80)), server.server.server_port]
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "WEBHOOK_ALLOWED_PORTS": ports}
    yield server
    server.close()


def delivery() -> Job | None:
    return Job.objects.filter(task_path=DELIVERY).first()


def delivery_errors_after_drain() -> list[Any]:
    drain()
    job = delivery()
    return job.errors if job is not None else []


def run_until_delivered() -> Job:
    def finished() -> bool:
        drain()
        job = delivery()
        return job is not None and job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)

    wait_until(finished, message="the webhook delivery to finish")
    job = delivery()
    assert job is not None
    return job


# The allow-list


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("hooks.example.com", True),
        ("example.com", True),
        ("a.b.example.com", True),
        ("EXAMPLE.com", True),
        ("badexample.com", False),
        ("example.com.attacker.test", False),
        ("127.0.0.1", True),
        ("127.0.0.2", False),
        ("localhost", True),
        ("169.254.169.254", False),
    ],
)
def test_host_allowed(host: str, allowed: bool) -> None:
    assert host_allowed(host, ["127.0.0.1", "localhost", ".example.com"]) is allowed


def test_a_star_allows_nothing() -> None:
    assert not host_allowed("anything.test", ["*"])


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "https://user:pw@example.com/hook",
        "https://attacker.test/hook",
        "https://example.com@attacker.test/hook",
        "https://[::1]/hook",
        "http://example.com:notaport/",
        "https:///hook",
    ],
)
def test_check_callback_url_refuses(url: str) -> None:
    with pytest.raises(InvalidCallbackURL):
        check_callback_url(url)


def test_check_callback_url_accepts_allowed_hosts() -> None:
    check_callback_url("https://hooks.example.com/jobs?x=1")
    check_callback_url("http://127.0.0.1/hook")
    check_callback_url("https://hooks.example.com:443/hook")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:22/", "https://hooks.example.com:8443/", "http://localhost:6379/"]
)
def test_only_the_listed_ports_of_an_allowed_host(url: str, settings: Any) -> None:
    """An allowed host is not a port scanner: its other ports are refused before any connection."""
    with pytest.raises(InvalidCallbackURL, match="WEBHOOK_ALLOWED_PORTS"):
        check_callback_url(url)
    port = int(url.rsplit(":", 1)[1].strip("/"))
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "WEBHOOK_ALLOWED_PORTS": [port]}
    check_callback_url(url)


def test_without_a_secret_no_callback_is_accepted(settings: Any) -> None:
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "WEBHOOK_SECRET": ""}
    with pytest.raises(InvalidCallbackURL, match="WEBHOOK_SECRET"):
        check_callback_url("https://hooks.example.com/jobs")


def test_dispatch_async_checks_the_callback(db: None) -> None:
    with pytest.raises(InvalidCallbackURL):
        dispatch_async(tasks.echo, None, callback_url="https://attacker.test/")
    assert not Job.objects.exists()


# The signature


def test_v2_signs_the_event_and_job_id_headers_too() -> None:
    body, now = b"{}", 1_700_000_000
    header = sign(SECRET, body, now, "job.succeeded", "abc")
    assert verify_signature(SECRET, body, header, now=now)  # v1, the body alone, still checks
    assert verify_signature(SECRET, body, header, now=now, event="job.succeeded", job_id="abc")
    assert not verify_signature(SECRET, body, header, now=now, event="job.succeeded", job_id="abd")
    assert not verify_signature(
        SECRET, body, sign(SECRET, body, now), now=now, event="job.succeeded", job_id="abc"
    )


def test_signature_round_trip_and_tampering() -> None:
    body = b'{"event":"job.succeeded"}'
    now = 1_700_000_000
    header = sign(SECRET, body, now)
    assert header.startswith(f"t={now},v1=")
    assert verify_signature(SECRET, body, header, now=now + 10)
    assert not verify_signature(SECRET, body + b" ", header, now=now)
    assert not verify_signature("other", body, header, now=now)
    assert not verify_signature(SECRET, body, header, now=now + 301)  # a replay, too late
    assert not verify_signature(SECRET, body, header.replace(f"t={now}", f"t={now + 1}"), now=now)
    for broken in ["", "t=x,v1=00", "v1=00", "garbage", f"t={now}"]:
        assert not verify_signature(SECRET, body, broken, now=now)


# Delivery


def test_a_succeeded_job_is_delivered_signed(alice: User, receiver: Receiver) -> None:
    job_id = dispatched_id(alice, callback_url=receiver.url)
    delivered = run_until_delivered()
    assert delivered.status == JobStatus.SUCCEEDED
    assert delivered.attempts == 1
    assert delivered.dispatched_by == alice
    [request] = receiver.requests
    headers = request["headers"]
    assert verify_signature(SECRET, request["body"], headers[SIGNATURE_HEADER])
    assert headers["Content-Type"] == "application/json"
    assert headers["Bourbon-Event"] == "job.succeeded"
    assert headers["Bourbon-Job-Id"] == job_id
    signature = headers[SIGNATURE_HEADER]
    assert verify_signature(SECRET, request["body"], signature, event="job.succeeded", job_id=job_id)
    assert not verify_signature(SECRET, request["body"], signature, event="job.failed", job_id=job_id)
    body = json.loads(request["body"])
    assert body["event"] == "job.succeeded"
    assert body["job"]["job_id"] == job_id
    assert body["job"]["status"] == "succeeded"
    assert body["job"]["result"] == {"n": 1}
    # The delivery is a job of its own: its owner sees it, attempts and all.
    client = APIClient()
    client.force_authenticate(alice)
    listed = client.get("/api/jobs/", {"task": DELIVERY}).json()["results"]
    assert [(j["job_id"], j["status"], j["attempts"]) for j in listed] == [
        (str(delivered.id), "succeeded", 1)
    ]


def test_a_failed_job_is_delivered_with_its_errors(alice: User, receiver: Receiver) -> None:
    dispatched_id(alice, task="always_fails", callback_url=receiver.url)
    run_until_delivered()
    [request] = receiver.requests
    body = json.loads(request["body"])
    assert body["event"] == "job.failed"
    assert body["job"]["result"] is None
    assert [e["exception_class"] for e in body["job"]["errors"]] == ["builtins.ValueError"] * 2
    assert "traceback" not in body["job"]["errors"][0]


def test_a_failing_receiver_is_retried(alice: User, receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    dispatched_id(alice, callback_url=receiver.url)
    delivered = run_until_delivered()
    assert delivered.status == JobStatus.SUCCEEDED
    assert delivered.attempts == 3
    # The dispatcher is told nothing about the receiver; the operator reads why in the traceback.
    assert [e["message"] for e in delivered.errors] == [NOT_DELIVERED] * 2
    assert (
        "DeliveryProblem: The receiver answered 500 Internal Server Error."
        in delivered.errors[0]["traceback"]
    )
    assert "The receiver answered 503 Service Unavailable." in delivered.errors[1]["traceback"]
    assert len(receiver.requests) == 3
    # Each attempt is signed afresh; the body is the same.
    assert len({r["body"] for r in receiver.requests}) == 1
    assert all(verify_signature(SECRET, r["body"], r["headers"][SIGNATURE_HEADER]) for r in receiver.requests)


def test_redirects_are_not_followed(alice: User, receiver: Receiver) -> None:
    receiver.statuses = [302] * 10
    dispatched_id(alice, callback_url=receiver.url)
    delivered = run_until_delivered()
    assert delivered.status == JobStatus.FAILED
    assert delivered.errors[0]["message"] == NOT_DELIVERED
    assert "redirects are not followed" in delivered.errors[0]["traceback"]
    assert {r["path"] for r in receiver.requests} == {"/hook"}


def test_a_slow_receiver_times_out(alice: User, receiver: Receiver, settings: Any) -> None:
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "WEBHOOK_TIMEOUT": 0.2}
    receiver.delay = 0.5
    dispatched_id(alice, callback_url=receiver.url)
    wait_until(
        lambda: drain() is not None and (job := delivery()) and job.errors, message="a timed-out attempt"
    )
    receiver.delay = 0
    delivered = run_until_delivered()
    assert delivered.status == JobStatus.SUCCEEDED
    assert delivered.errors[0]["message"] == NOT_DELIVERED
    assert "could not be reached" in delivered.errors[0]["traceback"]
    assert "timed out" in delivered.errors[0]["traceback"]


def test_a_host_removed_from_the_allow_list_is_not_called(
    alice: User, receiver: Receiver, settings: Any
) -> None:
    dispatched_id(alice, callback_url=receiver.url)
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "WEBHOOK_ALLOWED_HOSTS": ["hooks.example.com"]}
    delivered = run_until_delivered()
    assert delivered.status == JobStatus.FAILED
    assert delivered.attempts == 1
    assert receiver.requests == []


def test_cancelled_jobs_and_jobs_without_a_callback_send_nothing(alice: User, receiver: Receiver) -> None:
    client = APIClient()
    client.force_authenticate(alice)
    job_id = dispatched_id(alice, callback_url=receiver.url)
    assert client.post(f"/api/jobs/{job_id}/cancel/").status_code == 200
    dispatched_id(alice)
    drain()
    assert delivery() is None
    assert receiver.requests == []


def test_a_tasks_default_callback(alice: User, receiver: Receiver) -> None:
    with_default = dataclasses.replace(tasks.echo, callback_url=receiver.url)  # type: ignore[type-var]
    dispatch_async(with_default, {"n": 2}, dispatched_by=alice)
    run_until_delivered()
    assert json.loads(receiver.requests[0]["body"])["job"]["result"] == {"n": 2}


# Addresses: resolved once, public only unless listed, connected to as checked


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/hook", "http://[::1]/hook", "http://169.254.169.254/latest", "http://10.1.2.3/x"],
)
def test_literal_private_addresses_are_refused_at_dispatch(url: str, settings: Any) -> None:
    host = url.split("/")[2].strip("[]")
    settings.BOURBON_JOBS = {
        **settings.BOURBON_JOBS,
        "WEBHOOK_ALLOWED_HOSTS": [host],
        "WEBHOOK_ALLOWED_NETWORKS": [],
    }
    with pytest.raises(InvalidCallbackURL, match="not a public address"):
        check_callback_url(url)


def test_a_name_that_resolves_to_loopback_is_not_called(
    alice: User, receiver: Receiver, settings: Any
) -> None:
    """``localhost`` is on the host allow-list; what it resolves to is not, once loopback is unlisted."""
    url = receiver.url.replace("127.0.0.1", "localhost")
    dispatched_id(alice, callback_url=url)
    settings.BOURBON_JOBS = {**settings.BOURBON_JOBS, "WEBHOOK_ALLOWED_NETWORKS": ["10.0.0.0/8"]}
    wait_until(
        lambda: drain() is not None and (job := delivery()) and job.errors, message="a refused attempt"
    )
    job = delivery()
    assert job is not None and receiver.requests == []
    assert job.errors[0]["message"] == NOT_DELIVERED
    assert "localhost resolves to 127.0.0.1" in job.errors[0]["traceback"]


def test_the_delivery_connects_to_the_address_it_checked(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    """No DNS rebinding: one lookup, and the connection goes to its answer, the name kept as ``Host``."""
    import socket

    lookups: list[str] = []
    real = socket.getaddrinfo

    def answer_once(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "127.0.0.1":  # connecting to the checked address: a numeric lookup, no DNS
            return real(host, *args, **kwargs)
        lookups.append(host)
        if len(lookups) > 1:
            raise AssertionError("looked up twice")
        return real("127.0.0.1", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", answer_once)
    url = receiver.url.replace("127.0.0.1", "hooks.example.com")
    assert webhooks.post(url, b"{}", {"Content-Type": "application/json"}, 5) == 200
    assert lookups == ["hooks.example.com"]
    assert receiver.requests[0]["headers"]["Host"] == f"hooks.example.com:{receiver.server.server_port}"


@pytest.mark.parametrize("networks", [["10.0.0.0/33"], "10.0.0.0/8", [10]])
def test_the_allowed_networks_setting_is_checked(networks: Any) -> None:
    from django_bourbon_jobs.conf import validate

    [(check_id, message)] = validate({"WEBHOOK_ALLOWED_NETWORKS": networks})
    assert check_id == "bourbon_jobs.E002" and "WEBHOOK_ALLOWED_NETWORKS" in message
