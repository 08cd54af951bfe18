"""A dispatch body over the limit is refused before it is read, under ASGI (uvicorn) and WSGI.

Django's ASGI handler reads a whole body before any view runs; ``LimitRequestBodies``
(wrapped around ``tests.asgi``) refuses on ``Content-Length`` at once, and stops a
chunked body at the limit.
"""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from django_bourbon_jobs.models import Job
from tests.streams import Uvicorn

pytestmark = pytest.mark.django_db(transaction=True)
LIMIT = 65536 + 8192  # API_MAX_PAYLOAD_BYTES and the envelope


@pytest.fixture
def alice(transactional_db: None) -> User:
    return User.objects.create_user("alice", password="pw")


BASIC = "Authorization: Basic " + base64.b64encode(b"alice:pw").decode()


@pytest.fixture
def asgi_server(alice: User) -> Iterator[Uvicorn]:
    server = Uvicorn()
    yield server
    server.stop()


def request_head(port: int, length_header: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        (
            f"POST /api/jobs/ HTTP/1.1\r\nHost: 127.0.0.1\r\n{BASIC}\r\n"
            f"Content-Type: application/json\r\n{length_header}\r\n\r\n"
        ).encode()
    )
    return sock


def status_of(sock: socket.socket) -> int:
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return int(head.split(b" ", 2)[1])


def test_a_content_length_over_the_limit_is_refused_unread(asgi_server: Uvicorn, alice: User) -> None:
    sock = request_head(asgi_server.port, "Content-Length: 1000000000")
    started = time.monotonic()
    assert status_of(sock) == 413  # no byte of the body was sent: Django would wait for all of them
    assert time.monotonic() - started < 5
    sock.close()


def test_a_chunked_body_is_read_only_up_to_the_limit(asgi_server: Uvicorn, alice: User) -> None:
    sock = request_head(asgi_server.port, "Transfer-Encoding: chunked")
    chunk, sent = b"[" + b"1," * 8000 + b"1]", 0
    sock.settimeout(0.05)
    status = None
    while sent < 50 * 2**20 and status is None:
        try:
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sent += len(chunk)
            status = status_of(sock)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    sock.settimeout(10)
    if status is None:
        status = status_of(sock)
    sock.close()
    assert status == 413
    assert sent < 4 * LIMIT, f"{sent} bytes sent before the refusal"
    assert not Job.objects.exists()


def test_a_body_within_the_limit_passes_through(asgi_server: Uvicorn, alice: User) -> None:
    body = b'{"task": "echo", "payload": {"n": 1}}'
    sock = request_head(asgi_server.port, f"Content-Length: {len(body)}")
    sock.sendall(body)
    assert status_of(sock) == 202
    sock.close()


def test_under_wsgi_the_view_refuses_on_content_length(live_server: Any, alice: User) -> None:
    port = int(live_server.url.rsplit(":", 1)[1])
    sock = request_head(port, "Content-Length: 1000000000")
    assert status_of(sock) == 413
    sock.close()
