"""How a worker process ended, in words an operator can act on.

A job whose process died is told the exit code or signal, and when the kernel's
OOM killer did it, that too: the memory cgroup's ``oom_kill`` count (cgroup v2
``memory.events``, or v1 ``memory.oom_control``) rose while the process died of
SIGKILL. Where no cgroup count can be read, a SIGKILL is reported with the
process's last measured memory, which is the next best clue.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def resident_memory() -> int:
    """This process's resident set size in bytes (0 where ``/proc`` is not there)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def _memory_cgroups() -> list[tuple[Path, str]]:
    """``(directory under which the hierarchy is mounted, cgroup path)`` of this process's memory cgroup.

    From ``/proc/self/cgroup``: the cgroup v1 ``memory`` controller's line, and
    the v2 line (``0::``), whose hierarchy is mounted at the cgroup root or at
    ``unified/`` beside v1 controllers.
    """
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            found.append((CGROUP_ROOT / "memory", path))
        elif controllers == "":
            found += [(CGROUP_ROOT, path), (CGROUP_ROOT / "unified", path)]
    return found


def _oom_counters() -> list[Path]:
    """Candidate files, most specific first.

    Inside a container the cgroup mount's root is often the container's own
    cgroup, while ``/proc/self/cgroup`` may name the full path: so each path is
    also tried without its leading parts.
    """
    candidates = []
    for mount, path in _memory_cgroups():
        parts = [part for part in path.split("/") if part]
        for start in range(len(parts) + 1):
            directory = mount.joinpath(*parts[start:])
            candidates += [directory / "memory.oom_control", directory / "memory.events"]
    return [path for path in candidates if path.is_file()]


def oom_kill_counter() -> Path | None:
    """The file holding this process's memory cgroup's OOM kill count, or ``None`` where there is none.

    Resolved once when the supervisor starts: its workers are forked into that cgroup.
    """
    for path in _oom_counters():
        if read_oom_kills(path) is not None:
            return path
    return None


def read_oom_kills(counter: Path | None) -> int | None:
    """The ``oom_kill`` count in ``counter``, or ``None`` where it cannot be read."""
    if counter is None:
        return None
    try:
        for line in counter.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe_exit(
    pid: int | None, exitcode: int | None, last_rss: int, oom_kills: tuple[int | None, int | None]
) -> str:
    """One sentence: how process ``pid`` ended, and whether the OOM killer did it.

    ``oom_kills`` is the cgroup's count before and after the process died.
    """
    if exitcode is not None and exitcode < 0:
        how = f"was killed by {signal_name(-exitcode)} ({-exitcode})"
    else:
        how = f"exited with code {exitcode}"
    text = f"The worker process (pid {pid}) {how} during the attempt."
    if exitcode == -signal.SIGKILL:
        oom_before, oom_after = oom_kills
        if oom_before is not None and oom_after is not None and oom_after > oom_before:
            text += (
                " The kernel's OOM killer killed it"
                f" (the memory cgroup's oom_kill count rose to {oom_after})."
            )
        if last_rss:
            text += f" Its resident memory was last measured at {last_rss / 2**20:.0f} MB."
    return text
