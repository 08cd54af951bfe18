"""Processes of the run: walking ``/proc``, sending signals, polling, and cleaning up.

Reads every live process's pid, parent, group and session from ``/proc``, finds a
process's descendants, signals pids that may already be gone, polls a condition with a
deadline, and keeps the clean-up steps (pools, services, the work directory) that run
when the harness ends, however it ends: at exit, on SIGTERM and SIGHUP, on errors.
"""

from __future__ import annotations

import atexit
import collections
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .config import log

_cleanups: list[Callable[[], None]] = []


def on_exit(action: Callable[[], None]) -> None:
    """Run ``action`` when the harness ends, however it ends (last registered runs first)."""
    _cleanups.append(action)


def cleanup() -> None:
    while _cleanups:
        action = _cleanups.pop()
        try:
            action()
        except Exception as exc:  # noqa: BLE001  (clean-up carries on whatever one step raises)
            log(f"clean-up step failed: {exc!r}")


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def install_exit_handlers() -> None:
    """SIGTERM and SIGHUP end the harness like an exception; :func:`cleanup` runs at exit."""
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    atexit.register(cleanup)


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str


def processes() -> list[Proc]:
    """Every live process, from ``/proc/<pid>/stat`` (zombies left out)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] in ("Z", "X"):
            continue
        found.append(Proc(int(entry), int(fields[1]), int(fields[2]), int(fields[3]), fields[0]))
    return found


def descendants(root: int) -> list[int]:
    """``root`` and every process below it."""
    children = collections.defaultdict(list)
    for proc in processes():
        children[proc.ppid].append(proc.pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def send(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is truthy; false at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
