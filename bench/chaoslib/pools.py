"""Worker pools: ``manage.py runworkers`` commands of the chaos project, and their environment.

A :class:`Pool` is one ``runworkers`` command in a session of its own, started (and
started again) with its log in the work directory; it knows its supervisor, the worker
processes of every session it has had (orphans of a killed supervisor too), and kills
them all when closed. :func:`worker_env` is the environment of every Django process of
the run; :func:`runworkers_supports` asks ``runworkers --help`` about an option.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path

from .config import DB_NAME, PROJECT, ROOT
from .processes import on_exit, processes, wait_for


class Pool:
    """One ``manage.py runworkers`` command, in a session of its own.

    A supervisor killed with SIGKILL leaves its children running (orphans); they stay in
    the old session, which is remembered so that :meth:`close` kills them too.
    """

    def __init__(
        self, name: str, args: Iterable[str], env: dict[str, str], workdir: Path, python: str
    ) -> None:
        self.name = name
        self.args = list(args)
        self.env = env
        self.workdir = workdir
        self.python = python
        self.process: subprocess.Popen[bytes] | None = None
        self.sessions: list[int] = []
        on_exit(self.close)

    def start(self) -> None:
        logfile = self.workdir / f"{self.name}-{len(self.sessions) + 1}.log"
        with open(logfile, "ab") as out:
            self.process = subprocess.Popen(
                [self.python, str(PROJECT / "manage.py"), "runworkers", *self.args],
                cwd=PROJECT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.sessions.append(self.process.pid)

    @property
    def supervisor(self) -> int:
        assert self.process is not None
        return self.process.pid

    def children(self) -> list[int]:
        return [p.pid for p in processes() if p.ppid == self.supervisor]

    def workers(self) -> list[int]:
        """Worker processes of every session of this pool (orphans too), not the live supervisor."""
        sessions = set(self.sessions)
        return [p.pid for p in processes() if p.sid in sessions and p.pid != self.supervisor]

    def kill_supervisor(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def terminate(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def signal_group(self, signum: int) -> None:
        os.killpg(self.supervisor, signum)

    def close(self) -> None:
        """SIGKILL every process of every session, and wait until they are gone."""
        sessions = set(self.sessions)
        for sid in sessions:
            try:
                os.killpg(sid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.process is not None:
            self.wait(10)
        wait_for(lambda: not any(p.sid in sessions for p in processes()), 10)


def runworkers_supports(python: str, option: str) -> bool:
    out = subprocess.run(
        [python, str(PROJECT / "manage.py"), "runworkers", "--help"],
        cwd=PROJECT,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return option in out.stdout


def worker_env(**extra: str) -> dict[str, str]:
    """The environment of every Django process of the run: ours and the workers'."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOURBON_", "DJANGO_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "chaosproject.settings",
            "PYTHONPATH": os.pathsep.join([str(PROJECT), str(ROOT)]),
            "CHAOS_PG_PORT": os.environ["CHAOS_PG_PORT"],
            "CHAOS_REDIS_URL": os.environ["CHAOS_REDIS_URL"],
            "CHAOS_DB": DB_NAME,
            "CHAOS_USE_REDIS": "0",
            "CHAOS_STARTS": os.environ["CHAOS_STARTS"],
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env
