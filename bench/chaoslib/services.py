"""The run's own services: a throw-away PostgreSQL cluster and a ``redis-server``.

Both listen on spare ports of 127.0.0.1, never the machine's own servers. The cluster is
``initdb``-ed into the work directory (as the ``postgres`` user when the harness runs as
root), and can be stopped, started, paused and resumed; redis-server is a child process,
killed and started again on the same port. :func:`start_services` starts both and
registers their clean-up.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from .config import DB_NAME, PG_BIN, log
from .processes import descendants, on_exit, send, wait_for


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the ``postgres`` user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class Postgres:
    """A throw-away PostgreSQL cluster on a spare port, with its socket in the work directory."""

    def __init__(self, workdir: Path, max_connections: int = 400) -> None:
        self.workdir = workdir
        self.max_connections = max_connections
        self.data = workdir / "pgdata"
        self.sockets = workdir / "pgsock"
        self.logfile = self.sockets / "postgres.log"
        self.port = free_port()

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            as_postgres([str(PG_BIN / args[0]), *args[1:]]),
            cwd=self.workdir,
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal is for the harness, not the postmaster
        )

    def init(self) -> None:
        for directory in (self.data, self.sockets):
            directory.mkdir(mode=0o700)
            if os.geteuid() == 0:
                shutil.chown(directory, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.sockets}"
            f" -c fsync=off -c full_page_writes=off -c max_connections={self.max_connections}"
        )
        self._run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.logfile), "-o", options
        )

    def stop_immediate(self) -> None:
        self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data))

    def postmaster(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return None

    def pids(self) -> list[int]:
        """The postmaster and every backend and auxiliary process it forked."""
        postmaster = self.postmaster()
        return descendants(postmaster) if postmaster else []

    def pause(self) -> list[int]:
        """SIGSTOP the postmaster first (so it forks nothing more), then everything below it."""
        postmaster = self.postmaster()
        if postmaster is None:
            return []
        send([postmaster], signal.SIGSTOP)
        paused: set[int] = set()
        for _ in range(3):  # a backend forked in the instant before the postmaster stopped
            new = set(self.pids()) - paused
            send(new, signal.SIGSTOP)
            paused |= new
        return sorted(paused)

    def resume(self) -> None:
        send(self.pids(), signal.SIGCONT)

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def close(self) -> None:
        self.resume()
        if self.postmaster() is not None:
            try:
                self.stop_immediate()
            except (subprocess.SubprocessError, OSError):
                send(self.pids(), signal.SIGKILL)


class Redis:
    """A ``redis-server`` of our own, a child process, killed and restarted on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir)]
        with open(self.workdir / "redis.log", "ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=out, start_new_session=True)
        if not wait_for(self.pings, 10):
            raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def pings(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def close(self) -> None:
        self.kill()


def start_services(workdir: Path) -> tuple[Postgres, Redis]:
    pg = Postgres(workdir)
    on_exit(pg.close)
    pg.init()
    pg.start()
    pg.create_database(DB_NAME)
    redis = Redis(workdir)
    on_exit(redis.close)
    redis.start()
    log(f"PostgreSQL on 127.0.0.1:{pg.port}, redis-server on 127.0.0.1:{redis.port}, in {workdir}")
    return pg, redis
