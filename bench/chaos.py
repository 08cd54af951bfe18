"""Chaos run of ``manage.py runworkers``: kill, pause and starve its processes, count the damage.

Run from the repository root, in a virtualenv where the project is installed with
its ``test`` extra::

    python bench/chaos.py                      # every scenario, 20,000 jobs in scenario 1
    python bench/chaos.py --short --scenarios 1,2,7 --json

It starts its own PostgreSQL 15 cluster (``initdb`` into a temporary directory, run as
the ``postgres`` user when started as root) and its own ``redis-server``, each on a spare
port, never the machine's. Workers are ``manage.py runworkers`` commands of the small
project in ``bench/chaos_project`` (short leases, see its settings). Each scenario starts
from empty tables, dispatches its jobs, injects its faults, waits (polling the database,
with a deadline) until every job is in a final state, and prints one row. Everything
started is stopped at exit, on Ctrl-C and on errors too.

Scenarios:

1. two pools, a random worker process SIGKILLed every second, each supervisor SIGKILLed
   once and restarted (plain jobs with ``max_attempts=1``);
2. PostgreSQL stopped with ``pg_ctl stop -m immediate``, started again 5 s later;
3. every process of the PostgreSQL cluster SIGSTOPped for 10 s, then SIGCONT;
4. Redis SIGKILLed for 10 s, then started again on its port (backend ``OPTIONS["REDIS"]``);
5. one of two pools (supervisor and children) SIGSTOPped for ``LEASE_SECONDS + 3`` s;
6. SIGTERM to a supervisor running 2 s jobs, with a ``--grace`` that covers them and one
   that does not, then a fresh pool finishes the rest;
7. poison jobs (``os._exit``, SIGKILL of its own process, a memory hog, a job stuck in C
   past its timeout, a return value with a NUL) among plain jobs.

Columns and bars: see ``bench/README.md``. The exit code is 1 when a bar is broken.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import glob
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ROOT / "bench" / "chaos_project"
PG_BIN = Path(
    os.environ.get("CHAOS_PG_BIN")
    or max(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), default="/usr/bin")
)
"""PostgreSQL's server binaries (``initdb``, ``pg_ctl``): Debian's newest, or ``CHAOS_PG_BIN``."""
TAIL_SECONDS = 2.0
"""Scenarios 2-5 strike when about this much work is left (see ``Run.wait_for_tail``)."""
ALLOWANCE = 3.0
"""Seconds allowed on top of ``LEASE_SECONDS + RESCUE_INTERVAL`` for convergence: worker
start-up, a retry's backoff (``BACKOFF_MAX`` 1 s) and the few jobs still left to run."""
OPEN = ("queued", "running")
POISONS = ("exit_hard", "kill_self", "hog", "stuck_in_c", "nul_return")
POOL = ("--processes", "4", "--threads", "4")
SMALL_POOL = ("--processes", "2", "--threads", "4")
DB_NAME = "chaos"


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- clean-up -------------------------------------------------------------------------------------

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


# --- processes ------------------------------------------------------------------------------------


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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is truthy; false at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# --- services: our own PostgreSQL and Redis -------------------------------------------------------


def as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the ``postgres`` user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class Postgres:
    """A throw-away PostgreSQL cluster on a spare port, with its socket in the work directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
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
            " -c fsync=off -c full_page_writes=off -c max_connections=400"
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


# --- worker pools ---------------------------------------------------------------------------------


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


# --- the database, through Django ---------------------------------------------------------------


def setup_django(pg_port: int, redis_url: str, starts: Path) -> None:
    os.environ.update(
        {
            "CHAOS_STARTS": str(starts),
            "CHAOS_PG_PORT": str(pg_port),
            "CHAOS_REDIS_URL": redis_url,
            "CHAOS_DB": DB_NAME,
            # The harness dispatches like an app server with Redis configured; whether the
            # workers get the option is up to each scenario.
            "CHAOS_USE_REDIS": "1",
            "DJANGO_SETTINGS_MODULE": "chaosproject.settings",
        }
    )
    sys.path[:0] = [str(PROJECT), str(ROOT)]
    import django

    django.setup()


def query(sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return list(cursor.fetchall()) if cursor.description else []


def try_query(sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]] | None:
    """``query``, or ``None`` while the database is unreachable (the connection is dropped)."""
    from django.db import DatabaseError, connection

    try:
        return query(sql, params)
    except DatabaseError:
        connection.close()
        return None


def open_jobs() -> int | None:
    rows = try_query("SELECT count(*) FROM bourbon_jobs_job WHERE status IN ('queued', 'running')")
    return None if rows is None else int(rows[0][0])


def finished_fraction(total: int) -> float | None:
    left = open_jobs()
    return None if left is None else 1 - left / max(total, 1)


def reset_tables() -> None:
    from django.apps import apps

    tables = [
        m._meta.db_table
        for label in ("bourbon_jobs", "chaosapp")
        for m in apps.get_app_config(label).get_models()
    ]
    query(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def load_starts() -> set[str]:
    """Ids of the plain jobs whose attempt started at least once (``task_started``: ``mark_start``)."""
    lines = Path(os.environ["CHAOS_STARTS"]).read_text().splitlines()
    return {line.split()[0] for line in lines if line.strip()}


def dispatch_plain(count: int, sleep_ms: int, once: bool = False) -> list[str]:
    """Dispatch ``count`` plain jobs in bulk (COPY); their ids."""
    from chaosapp import tasks

    from django_bourbon_jobs import dispatch_many

    task = tasks.plain_once if once else tasks.plain
    ids: list[str] = []
    for start in range(0, count, 5000):
        size = min(5000, count - start)
        ids += [r.id for r in dispatch_many(task, [{"sleep_ms": sleep_ms}] * size)]
    return ids


def enqueue_one(task_name: str, payload: Any = None) -> str:
    """One job through ``Task.enqueue()`` (its own transaction, NOTIFY and Redis publish)."""
    from chaosapp import tasks

    return str(getattr(tasks, task_name).enqueue(payload).id)


# --- measurement ----------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: int
    name: str
    plain_max_attempts: int
    jobs: int = 0
    plain_jobs: int = 0
    poison_jobs: int = 0
    lost: int = 0
    failed: int = 0
    failed_never_started: int = 0
    failed_killed_running: int = 0
    failed_not_made_to_fail: int = 0
    never_executed: int = 0
    executions: int = 0
    duplicates: int = 0
    duplicates_at_fault: int = 0
    same_claim_twice: int = 0
    stuck: int = 0
    converge_s: float | None = None
    converge_limit_s: float = 0.0
    open_at_fault_end: int | None = None
    poison: dict[str, dict[str, int]] = field(default_factory=dict)
    poison_not_failed: int = 0
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    plain_errors: dict[str, int] = field(default_factory=dict)
    failed_reasons: dict[str, int] = field(default_factory=dict)
    """The last error of each plain job counted in ``failed_not_made_to_fail``, by kind."""
    faults: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    broken: list[str] = field(default_factory=list)


@dataclass
class Scenario:
    """What a scenario hands to :func:`measure`: the jobs it dispatched and when its faults ended."""

    row: Row
    dispatched: dict[str, str] = field(default_factory=dict)
    """job id -> task name (``plain``, ``plain_once`` or a poison's name)."""
    fault_end: float | None = None
    """Wall-clock time at which the last fault ended (the service or process was back)."""
    started: float = field(default_factory=time.monotonic)

    def add(self, ids: Iterable[str], task_name: str) -> None:
        self.dispatched.update(dict.fromkeys(ids, task_name))

    def fault(self, what: str) -> None:
        self.row.faults.append(f"{time.monotonic() - self.started:6.1f}s {what}")
        log(what)

    def fault_over(self) -> None:
        self.fault_end = time.time()
        self.row.open_at_fault_end = open_jobs()


def wait_until_settled(deadline_s: float) -> float | None:
    """Poll until no job is queued or running; the wall-clock time that was first seen, or ``None``."""
    if wait_for(lambda: open_jobs() == 0, deadline_s, interval=0.1):
        return time.time()
    return None


def short_class(path: str) -> str:
    return path.rsplit(".", 1)[-1]


@dataclass
class JobRecord:
    task_path: str
    status: str
    attempts: int
    errors: list[dict[str, Any]]


@dataclass
class ExecRecord:
    attempt: int
    worker_id: str
    pid: int
    started_at: Any
    finished_at: Any


def load_jobs() -> dict[str, JobRecord]:
    rows = query("SELECT id, task_path, status, attempts, errors FROM bourbon_jobs_job")
    return {
        str(job_id): JobRecord(
            path, status, attempts, json.loads(errors) if isinstance(errors, str) else errors
        )
        for job_id, path, status, attempts, errors in rows
    }


def load_executions() -> dict[str, list[ExecRecord]]:
    runs: dict[str, list[ExecRecord]] = collections.defaultdict(list)
    for job_id, *fields in query(
        "SELECT job_id, attempt, worker_id, pid, started_at, finished_at FROM chaosapp_execution ORDER BY id"
    ):
        runs[str(job_id)].append(ExecRecord(*fields))
    return runs


def same_claim_repeats(executions: list[ExecRecord], errors: list[dict[str, Any]]) -> int:
    """Executions beyond one per claim, a claim being (attempt, worker).

    An attempt the worker refunded (its error says ``"charged": false``: the database
    connection broke under it) is claimed again with the same attempt number, possibly by
    the same worker: each such refund accounts for one more execution under those numbers.
    """
    claims = collections.Counter((e.attempt, e.worker_id) for e in executions)
    refunds = collections.Counter(
        (error.get("attempt"), error.get("worker_id")) for error in errors if error.get("charged") is False
    )
    return sum(max(n - 1 - refunds[claim], 0) for claim, n in claims.items())


def error_kind(error: dict[str, Any]) -> str:
    """An error's class and the first sentence of its message, numbers and ids blanked: a reason to count."""
    message = str(error.get("message", "")).split(". ")[0]
    message = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|\d+", "N", message)
    return f"{short_class(error['exception_class_path'])}: {message[:90]}"


def clock(moment: Any) -> str:
    return moment.strftime("%H:%M:%S.%f")[:-3]


def describe(job_id: str, job: JobRecord | None, executions: list[ExecRecord]) -> dict[str, Any]:
    """One job's story, for the examples printed under the table."""
    if job is None:
        return {"job": job_id, "status": "missing"}
    return {
        "job": job_id,
        "status": job.status,
        "attempts": job.attempts,
        "errors": [
            f"attempt {e.get('attempt')} on {e.get('worker_id')} at {str(e.get('at', ''))[11:23]}:"
            f" {short_class(e['exception_class_path'])}"
            f"{'' if e.get('charged', True) else ' (refunded)'}: {str(e.get('message', ''))[:160]}"
            for e in job.errors
        ],
        "executions": [
            f"attempt {e.attempt} on {e.worker_id} pid {e.pid}, {clock(e.started_at)}"
            f" to {clock(e.finished_at) if e.finished_at else '(unfinished)'}"
            for e in executions
        ],
    }


def example(row: Row, kind: str, story: dict[str, Any]) -> None:
    stories = row.examples.setdefault(kind, [])
    if len(stories) < 3:
        stories.append(story)


def measure_plain(
    row: Row, jobs: dict[str, JobRecord], runs: dict[str, list[ExecRecord]], ids: list[str]
) -> None:
    errors: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    began = load_starts()
    for job_id in ids:
        job, executions = jobs.get(job_id), runs.get(job_id, [])
        if job is None:
            continue
        errors.update(short_class(e["exception_class_path"]) for e in job.errors)
        row.executions += len(executions)
        extra = max(len(executions) - 1, 0)
        row.duplicates += extra
        row.duplicates_at_fault += extra if job.errors else 0
        if extra and not job.errors:
            example(row, "executed twice, no fault recorded", describe(job_id, job, executions))
        repeats = same_claim_repeats(executions, job.errors)
        row.same_claim_twice += repeats
        if repeats:
            example(row, "same claim twice", describe(job_id, job, executions))
        row.never_executed += not executions
        if job.status in OPEN:
            example(row, "stuck", describe(job_id, job, executions))
        if job.status != "failed":
            continue
        row.failed += 1
        row.failed_never_started += job_id not in began
        killed = job_id in began and short_class(job.errors[-1]["exception_class_path"]) == "WorkerLost"
        if row.plain_max_attempts == 1 and killed:
            row.failed_killed_running += 1
        else:
            reasons[error_kind(job.errors[-1])] += 1
            example(row, "failed not made to fail", describe(job_id, job, executions))
    row.failed_not_made_to_fail = row.failed - row.failed_killed_running
    row.plain_errors = dict(errors.most_common())
    row.failed_reasons = dict(reasons.most_common())


def measure_poison(row: Row, jobs: dict[str, JobRecord], dispatched: dict[str, str]) -> None:
    outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for job_id, name in dispatched.items():
        if name.startswith("plain"):
            continue
        job = jobs.get(job_id)
        status = job.status if job else "lost"
        last = short_class(job.errors[-1]["exception_class_path"]) if job and job.errors else ""
        outcomes[name][f"{status}:{last}" if last else status] += 1
        if status != "failed":
            row.poison_not_failed += 1
            example(row, "poison not failed", describe(job_id, job, []))
    row.poison = {name: dict(counts) for name, counts in outcomes.items()}


def measure(scenario: Scenario, limit: float, settled_at: float | None) -> Row:
    """Fill the row from the job table and the executions the jobs recorded."""
    row = scenario.row
    jobs, runs = load_jobs(), load_executions()
    plain_ids = [i for i, name in scenario.dispatched.items() if name.startswith("plain")]
    row.jobs = len(scenario.dispatched)
    row.plain_jobs = len(plain_ids)
    row.poison_jobs = row.jobs - row.plain_jobs
    row.lost = sum(1 for i in scenario.dispatched if i not in jobs)
    row.stuck = sum(1 for i in scenario.dispatched if i in jobs and jobs[i].status in OPEN)
    measure_plain(row, jobs, runs, plain_ids)
    measure_poison(row, jobs, scenario.dispatched)
    row.converge_limit_s = limit
    if settled_at is not None and scenario.fault_end is not None and row.stuck == 0:
        row.converge_s = round(max(settled_at - scenario.fault_end, 0.0), 2)
    return row


def check_bars(row: Row) -> list[str]:
    broken = []
    for name in ("lost", "stuck", "failed_not_made_to_fail", "same_claim_twice", "poison_not_failed"):
        if getattr(row, name):
            broken.append(f"{name}={getattr(row, name)}")
    if row.converge_s is None:
        broken.append("did not converge")
    elif row.converge_s > row.converge_limit_s:
        broken.append(f"converge {row.converge_s}s > {row.converge_limit_s}s")
    return broken


# --- the scenarios --------------------------------------------------------------------------------


@dataclass
class Run:
    """What every scenario needs: options, services, and a way to start pools."""

    args: argparse.Namespace
    workdir: Path
    pg: Postgres
    redis: Redis
    lease: float
    rescue: float
    pools: list[Pool] = field(default_factory=list)

    @property
    def limit(self) -> float:
        return self.lease + self.rescue + ALLOWANCE

    @property
    def small_jobs(self) -> int:
        return max(self.args.jobs // 4, 200)

    def pool(self, name: str, *args: str, **env: str) -> Pool:
        pool = Pool(name, args, worker_env(**env), self.workdir, self.args.python)
        self.pools.append(pool)
        pool.start()
        return pool

    def close_pools(self) -> None:
        while self.pools:
            self.pools.pop().close()

    def wait_for_tail(self, total: int, seconds: float = TAIL_SECONDS) -> None:
        """Wait until about ``seconds`` of work is left at the pool's current pace.

        The fault then lands mid-run, with jobs running and queued, and what is left
        after it runs in a second or two: the convergence time is the recovery, not the
        drain of a backlog (which with ``CONN_MAX_AGE`` 0 runs a few hundred jobs a second).
        """
        history: collections.deque[tuple[float, int]] = collections.deque()

        def little_left() -> bool:
            left = open_jobs()
            if left is None:
                return False
            now = time.monotonic()
            history.append((now, total - left))
            while now - history[0][0] > 1.0:
                history.popleft()
            (began, done_then), done = history[0], total - left
            pace = (done - done_then) / max(now - began, 0.1)
            return done > 0 and left <= pace * seconds

        wait_for(little_left, self.args.deadline, interval=0.1)


def kill_random_worker(s: Scenario, pools: list[Pool]) -> None:
    """SIGKILL one worker process, children and orphans alike (never a supervisor)."""
    victims = [pid for pool in pools for pid in pool.workers()]
    if victims:
        victim = random.choice(victims)
        send([victim], signal.SIGKILL)
        s.fault(f"SIGKILL worker pid {victim}")
        s.fault_over()


def restart_supervisor(s: Scenario, pool: Pool, done: float) -> None:
    """SIGKILL the supervisor alone (its children are left to notice) and start the command again."""
    pool.kill_supervisor()
    s.fault(f"SIGKILL supervisor {pool.name} (pid {pool.supervisor}) at {done:.0%}")
    pool.start()
    s.fault_over()


def scenario_kills(run: Run, s: Scenario) -> None:
    """1: two pools; a random worker process SIGKILLed every second (--kill-every); each supervisor once."""
    ids = dispatch_plain(run.args.jobs, run.args.sleep_ms, once=True)
    s.add(ids, "plain_once")
    pools = [run.pool("s1-a", *POOL), run.pool("s1-b", *POOL)]
    restart_at = {pools[0].name: 1 / 3, pools[1].name: 2 / 3}
    next_kill, last_done, progress_at = float("inf"), 0.0, time.monotonic()
    while time.monotonic() - progress_at < run.args.deadline and last_done < 1:
        done = finished_fraction(len(ids))
        if done is not None and done > last_done:
            last_done, progress_at = done, time.monotonic()
            if next_kill == float("inf"):
                next_kill = time.monotonic()  # the kills start with the first finished job
        for pool in pools:
            if last_done >= restart_at.get(pool.name, 2):
                del restart_at[pool.name]
                restart_supervisor(s, pool, last_done)
        if time.monotonic() >= next_kill and last_done < 1:
            next_kill += run.args.kill_every
            kill_random_worker(s, pools)
        time.sleep(0.1)
    orphans = sum(len(p.workers()) - len(p.children()) for p in pools)
    s.row.notes.append(f"{orphans} workers of killed supervisors still alive at the end")


def scenario_pg_stop(run: Run, s: Scenario) -> None:
    """2: ``pg_ctl stop -m immediate`` mid-run, started again 5 s later."""
    ids = dispatch_plain(run.small_jobs, run.args.sleep_ms)
    s.add(ids, "plain")
    run.pool("s2", *POOL)
    run.wait_for_tail(len(ids))
    s.fault("pg_ctl stop -m immediate")
    run.pg.stop_immediate()
    time.sleep(5)
    run.pg.start()
    s.fault("PostgreSQL started again")
    s.fault_over()


def scenario_pg_pause(run: Run, s: Scenario) -> None:
    """3: SIGSTOP every process of the cluster for 10 s (6 s with --short), then SIGCONT."""
    ids = dispatch_plain(run.small_jobs, run.args.sleep_ms)
    s.add(ids, "plain")
    run.pool("s3", *POOL)
    run.wait_for_tail(len(ids))
    paused = run.pg.pause()
    s.fault(f"SIGSTOP {len(paused)} PostgreSQL processes")
    time.sleep(run.args.pg_pause)
    run.pg.resume()
    s.fault("SIGCONT PostgreSQL")
    s.fault_over()


def scenario_redis(run: Run, s: Scenario) -> None:
    """4: Redis SIGKILLed for 10 s (5 s with --short) and started again; jobs dispatched meanwhile."""
    ids = dispatch_plain(run.small_jobs, run.args.sleep_ms)
    s.add(ids, "plain")
    run.pool("s4", *POOL, CHAOS_USE_REDIS="1")
    run.wait_for_tail(len(ids))
    run.redis.kill()
    s.fault("SIGKILL redis-server")
    down_until = time.monotonic() + run.args.redis_down
    s.add([enqueue_one("plain", {"sleep_ms": run.args.sleep_ms}) for _ in range(50)], "plain")
    time.sleep(max(down_until - time.monotonic(), 0))
    run.redis.start()
    s.fault("redis-server started again")
    s.fault_over()
    s.add([enqueue_one("plain", {"sleep_ms": run.args.sleep_ms}) for _ in range(50)], "plain")
    s.row.notes.append("50 jobs enqueued one by one while Redis was down, 50 after")


def scenario_pool_pause(run: Run, s: Scenario) -> None:
    """5: one of two pools (its whole process group) SIGSTOPped for LEASE_SECONDS + 3 s."""
    ids = dispatch_plain(run.small_jobs, run.args.sleep_ms)
    s.add(ids, "plain")
    paused, _ = run.pool("s5-a", *SMALL_POOL), run.pool("s5-b", *SMALL_POOL)
    run.wait_for_tail(len(ids))
    paused.signal_group(signal.SIGSTOP)
    s.fault(f"SIGSTOP process group of s5-a ({len(paused.workers()) + 1} processes)")
    time.sleep(run.lease + 3)
    paused.signal_group(signal.SIGCONT)
    s.fault("SIGCONT s5-a")
    s.fault_over()


def all_slots_busy(slots: int) -> bool:
    """``slots`` jobs are running, or at least one is and none is left queued (all claimed)."""
    rows = try_query(
        "SELECT (SELECT count(*) FROM chaosapp_execution WHERE finished_at IS NULL),"
        " (SELECT count(*) FROM bourbon_jobs_job WHERE status = 'queued')"
    )
    if not rows:
        return False
    running, queued = rows[0]
    return bool(running >= slots or (running and not queued))


def _terminate_with_grace(run: Run, s: Scenario, name: str, grace: str) -> tuple[int, int]:
    """Start a pool, SIGTERM it once its 4 slots run 2 s jobs; (jobs running at SIGTERM, finished since)."""
    pool = run.pool(name, "--processes", "2", "--threads", "2", "--grace", grace)
    if not wait_for(lambda: all_slots_busy(4), run.args.deadline, 0.05):
        s.row.notes.append(f"{name}: its jobs never started")
    rows = query("SELECT job_id, pid FROM chaosapp_execution WHERE finished_at IS NULL")
    running = {str(job_id) for job_id, _ in rows}
    s.row.notes.append(
        f"{name}: running at SIGTERM per process: {sorted(collections.Counter(p for _, p in rows).values())}"
    )
    pool.terminate()
    s.fault(f"SIGTERM {name} (--grace {grace}) with {len(running)} jobs running")
    began = time.monotonic()
    code = pool.wait(float(grace) + 15)
    s.row.notes.append(f"{name} --grace {grace}: exited with {code} after {time.monotonic() - began:.1f}s")
    finished = query(
        "SELECT count(*) FROM bourbon_jobs_job WHERE id::text = ANY(%s) AND status = 'succeeded'",
        [list(running)],
    )[0][0]
    return len(running), int(finished)


def scenario_sigterm(run: Run, s: Scenario) -> None:
    """6: SIGTERM with 2 s jobs running, --grace 5 (covers them) then 0.5 (does not); a fresh pool ends."""
    s.add(dispatch_plain(8, 2000), "plain")
    running, finished = _terminate_with_grace(run, s, "s6-grace5", "5")
    s.row.notes.append(f"grace 5: {finished}/{running} running jobs finished within the grace")
    running, finished = _terminate_with_grace(run, s, "s6-grace0.5", "0.5")
    s.row.notes.append(f"grace 0.5: {finished}/{running} running jobs finished (expected 0: requeued)")
    s.fault_over()
    run.pool("s6-fresh", "--processes", "2", "--threads", "2")


def scenario_poison(run: Run, s: Scenario) -> None:
    """7: each poison kind (a few of each) dispatched among plain jobs."""
    kinds = list(POISONS)
    pool_args = list(POOL)
    if run.args.hog and runworkers_supports(run.args.python, "--max-memory"):
        pool_args += ["--max-memory", str(run.args.max_memory)]
    else:
        kinds.remove("hog")
        s.row.notes.append("hog skipped: runworkers has no --max-memory" if run.args.hog else "hog skipped")
    per_kind = 1 if run.args.short else 2
    poisons = [kind for kind in kinds for _ in range(per_kind)]
    random.shuffle(poisons)
    chunk = run.small_jobs // (len(poisons) + 1)
    for kind in poisons:
        s.add(dispatch_plain(chunk, run.args.sleep_ms), "plain")
        s.add([enqueue_one(kind, {"cap_mb": run.args.hog_cap})], kind)
    s.add(dispatch_plain(chunk, run.args.sleep_ms), "plain")
    run.pool("s7", *pool_args)


def poison_fault_end() -> float | None:
    """Scenario 7's faults are its poison jobs: they end when the last of them reaches its final state."""
    names = [f"chaosapp.tasks.{kind}" for kind in POISONS]
    [(last,)] = query(
        "SELECT extract(epoch FROM max(finished_at)) FROM bourbon_jobs_job WHERE task_path = ANY(%s)", [names]
    )
    return None if last is None else float(last)


SCENARIOS: dict[int, tuple[str, Callable[[Run, Scenario], None], int]] = {
    1: ("worker and supervisor SIGKILLs", scenario_kills, 1),
    2: ("PostgreSQL stopped 5 s (immediate)", scenario_pg_stop, 3),
    3: ("PostgreSQL SIGSTOPped", scenario_pg_pause, 3),
    4: ("Redis SIGKILLed and restarted", scenario_redis, 3),
    5: ("one pool SIGSTOPped past its lease", scenario_pool_pause, 3),
    6: ("SIGTERM, grace 5 s then 0.5 s", scenario_sigterm, 3),
    7: ("poison jobs among plain ones", scenario_poison, 3),
}


def run_scenario(run: Run, number: int) -> Row:
    name, body, plain_attempts = SCENARIOS[number]
    log(f"scenario {number}: {name}")
    reset_tables()
    starts = run.workdir / f"starts-{number}.log"  # one per scenario, kept with --keep
    starts.write_text("")
    os.environ["CHAOS_STARTS"] = str(starts)
    scenario = Scenario(Row(number, name, plain_attempts))
    try:
        body(run, scenario)
        settled_at = wait_until_settled(run.args.deadline)
        if number == 7:
            scenario.fault_end = poison_fault_end()
        row = measure(scenario, run.limit, settled_at)
        row.broken = check_bars(row)
    except Exception as exc:  # noqa: BLE001  (one broken scenario still leaves the others' rows)
        log(f"scenario {number} raised {exc!r}")
        row = scenario.row
        row.broken = [f"harness error: {exc!r}"]
    finally:
        run.close_pools()
    row.seconds = round(time.monotonic() - scenario.started, 1)
    log(f"scenario {number} done in {row.seconds}s: " + ("ok" if not row.broken else ", ".join(row.broken)))
    return row


# --- output ---------------------------------------------------------------------------------------

COLUMNS = (
    ("#", lambda r: str(r.scenario)),
    ("scenario", lambda r: r.name),
    ("jobs (poison)", lambda r: f"{r.jobs} ({r.poison_jobs})"),
    ("plain max_attempts", lambda r: str(r.plain_max_attempts)),
    ("lost", lambda r: str(r.lost)),
    ("failed not made to fail", lambda r: str(r.failed_not_made_to_fail)),
    ("failed never started", lambda r: str(r.failed_never_started)),
    ("killed running (max_attempts 1)", lambda r: str(r.failed_killed_running)),
    ("never executed", lambda r: str(r.never_executed)),
    ("dup. executions (at a fault)", lambda r: f"{r.duplicates} ({r.duplicates_at_fault})"),
    ("same claim twice", lambda r: str(r.same_claim_twice)),
    ("stuck", lambda r: str(r.stuck)),
    (
        "converge s (bar)",
        lambda r: f"{'-' if r.converge_s is None else r.converge_s} ({r.converge_limit_s:g})",
    ),
    ("run s", lambda r: f"{r.seconds:g}"),
    ("bars", lambda r: "ok" if not r.broken else "BROKEN: " + ", ".join(r.broken)),
)


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(title for title, _ in COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row) for _, cell in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def details(rows: list[Row]) -> str:
    lines = []
    for row in rows:
        lines.append(f"scenario {row.scenario} ({row.name}):")
        lines += [f"  fault {fault}" for fault in row.faults]
        lines += [f"  note: {note}" for note in row.notes]
        if row.plain_errors:
            lines.append(f"  plain jobs' recorded errors: {row.plain_errors}")
        if row.failed_reasons:
            lines.append(f"  why plain jobs failed: {row.failed_reasons}")
        if row.poison:
            lines.append(f"  poison outcomes (status:last error): {row.poison}")
        if row.open_at_fault_end is not None:
            lines.append(f"  jobs open when the last fault ended: {row.open_at_fault_end}")
        for kind, stories in row.examples.items():
            for story in stories:
                lines.append(f"  example, {kind}: job {story['job']} {story['status']}")
                lines += [f"    error {error}" for error in story.get("errors", [])]
                lines += [f"    execution {execution}" for execution in story.get("executions", [])]
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="1,2,3,4,5,6,7", help="comma-separated numbers (default: all)")
    parser.add_argument("--jobs", type=int, default=None, help="jobs in scenario 1 (20000; others a quarter)")
    parser.add_argument(
        "--sleep-ms", type=int, default=None, help="how long a plain job sleeps (5; --short 100)"
    )
    parser.add_argument(
        "--short", action="store_true", help="a few hundred jobs, shorter pauses: for the tests"
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="seconds to wait after the faults for every job to be final (120; --short 40)",
    )
    parser.add_argument(
        "--kill-every", type=float, default=1.0, help="seconds between scenario 1's kills (1)"
    )
    parser.add_argument(
        "--max-memory", type=int, default=256, help="runworkers --max-memory MB in scenario 7"
    )
    parser.add_argument("--hog-cap", type=int, default=1024, help="MB the memory hog allocates at most")
    parser.add_argument("--no-hog", dest="hog", action="store_false", help="leave the memory hog out")
    parser.add_argument("--json", action="store_true", help="also print one CHAOS-RESULT {json} line")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (data, logs)")
    parser.add_argument("--python", default=sys.executable, help="Python of the worker commands")
    args = parser.parse_args(argv)
    args.scenarios = [int(n) for n in args.scenarios.split(",") if n.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from 1-7")
    args.jobs = args.jobs or (800 if args.short else 20000)
    args.sleep_ms = args.sleep_ms if args.sleep_ms is not None else (100 if args.short else 5)
    args.deadline = args.deadline or (40.0 if args.short else 120.0)
    args.pg_pause = 6.0 if args.short else 10.0
    args.redis_down = 5.0 if args.short else 10.0
    return args


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    atexit.register(cleanup)
    workdir = Path(tempfile.mkdtemp(prefix="bourbon-chaos-"))
    workdir.chmod(0o755)  # the postgres user must reach its data directory
    if args.keep:
        on_exit(lambda: log(f"kept {workdir}"))
    else:
        on_exit(lambda: shutil.rmtree(workdir, ignore_errors=True))
    try:
        pg, redis = start_services(workdir)
        setup_django(pg.port, redis.url, workdir / "starts.log")  # each scenario names its own
        from django.core.management import call_command
        from django.db import connections

        from django_bourbon_jobs.conf import get_settings

        on_exit(connections.close_all)
        call_command("migrate", verbosity=0)
        conf = get_settings()
        run = Run(args, workdir, pg, redis, conf.LEASE_SECONDS, conf.RESCUE_INTERVAL)
        rows = []
        for number in args.scenarios:
            rows.append(run_scenario(run, number))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    finally:
        cleanup()
    print()
    print(table(rows))
    print()
    print(details(rows))
    print(
        f"\nbars: 0 lost, 0 stuck, 0 failed not made to fail, 0 same claim twice, every poison job failed,"
        f" converged within LEASE_SECONDS + RESCUE_INTERVAL + {ALLOWANCE:g} s"
        f" = {run.limit:g} s of the last fault"
    )
    if args.json:
        result = {
            "ok": not any(r.broken for r in rows),
            "settings": asdict(conf),
            "rows": [asdict(r) for r in rows],
        }
        print("CHAOS-RESULT " + json.dumps(result, default=str), flush=True)
    return 1 if any(r.broken for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
