"""Clients and servers for stream tests: a minimal SSE reader, and the test project under uvicorn."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from tests.conftest import ROOT, subprocess_env, wait_until


class EventReader:
    """A minimal SSE client over http.client: one parsed block per :meth:`next`."""

    def __init__(
        self, base_url: str, path: str, cookie: str, last_event_id: str | None = None, timeout: float = 15
    ) -> None:
        parts = urlsplit(base_url)
        self.conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
        headers = {"Accept": "text/event-stream", "Cookie": cookie}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.conn.request("GET", path, headers=headers)
        self.response = self.conn.getresponse()

    def blocks(self) -> Iterator[dict[str, Any]]:
        block: dict[str, Any] = {}
        for raw in self.response:
            line = raw.decode().rstrip("\n")
            if not line:
                if block:
                    yield block
                block = {}
            elif line.startswith(":"):
                block.setdefault("comments", []).append(line[1:].strip())
            else:
                field, _, value = line.partition(": ")
                block[field] = block[field] + "\n" + value if field in block else value

    def next_event(self) -> dict[str, Any] | None:
        """The next block with an ``event``, its data decoded; ``None`` when the stream ends."""
        for block in self.blocks():
            if "event" in block:
                block["data"] = json.loads(block["data"])
                return block
        return None

    def close(self) -> None:
        """Hang up: the response holds the socket (http.client hands it over for a stream)."""
        self.response.close()
        self.conn.close()


class Uvicorn:
    """The test project served by uvicorn (ASGI) in a subprocess, against the test database."""

    def __init__(self, **env: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "uvicorn", "tests.asgi:application", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--log-level", "warning"], env=subprocess_env(**env), cwd=ROOT
        )
        wait_until(lambda: accepts(self.port), timeout=30, message="uvicorn listening")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
