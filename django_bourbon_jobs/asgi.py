"""Refusing request bodies that are too large before Django reads them, under ASGI.

Django's ASGI handler reads a request's whole body (into memory, then a temporary
file) before any view runs, so the jobs API's ``413`` used to come after a 1 GB
upload had been read. Wrap the project's ASGI application::

    from django.core.asgi import get_asgi_application
    from django_bourbon_jobs.asgi import LimitRequestBodies

    application = LimitRequestBodies(get_asgi_application())

For a request that the jobs API's dispatch view serves (any view with a
``request_body_limit`` class method), a ``Content-Length`` over the limit
(``API_MAX_PAYLOAD_BYTES`` and room for the other fields) is answered
``413`` before a byte of the body is read, and a chunked body is read only up to
the limit, then answered ``413``. Other requests pass through untouched. (Under
WSGI nothing is needed: the view refuses on ``Content-Length`` before reading,
and Django reads no more of a body than its ``Content-Length``.)
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.urls import Resolver404, resolve

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _TooLarge(Exception):
    pass


class LimitRequestBodies:
    """ASGI middleware: the jobs API's dispatch bodies are refused past their limit, unread."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = _limit_for(scope)
        if limit is None:
            await self.app(scope, receive, send)
            return
        if _content_length(scope) > limit:
            await _refuse(send, limit)
            return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, bounded_receive, send)
        except _TooLarge:
            await _refuse(send, limit)


def _limit_for(scope: Scope) -> int | None:
    """The body limit of the view that will serve this request, if it declares one.

    A view declares it with a ``request_body_limit(method, action)`` class method (the
    jobs API's ``JobViewSet`` does, for ``POST /jobs/``); ``None`` means no limit here.
    """
    if scope["type"] != "http":
        return None
    try:
        match = resolve(scope["path"])
    except Resolver404:
        return None
    method = str(scope.get("method", "GET")).lower()
    action = (getattr(match.func, "actions", None) or {}).get(method)
    declared = getattr(getattr(match.func, "cls", None), "request_body_limit", None)
    return None if declared is None else declared(method, action)  # type: ignore[no-any-return]


def _content_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"The request body is larger than {limit} bytes."}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
