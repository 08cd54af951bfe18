"""Benchmark driver: runs inside one system's virtualenv, prints one JSON line.

Invoked by ``bench/run.py`` as ``<venv>/bin/python bench/driver.py SYSTEM ...`` with
BENCH_SYSTEM / BENCH_DB / BENCH_CONN_MAX_AGE set.  Steps:

1. ``migrate`` the (fresh) database.
2. Enqueue N ``noop`` jobs with the system's own ``task.enqueue()`` (not timed in the drain).
3. Start the system's worker command(s) with 2 processes and time until every job is
   finished: the DB is polled every 0.1 s; the drain time is ``max(finished_at)`` minus the
   wall-clock time just before the workers were spawned (same machine, same clock).
   Systems with a burst/batch mode exit by themselves; the others get SIGTERM.
4. Pickup latency: start the workers in normal (non-burst) mode, wait until idle, then
   K times enqueue one ``stamp`` job (which returns ``time.time()`` when it starts) after a
   random 0.2-1.2 s idle gap, and take ``stamp_return - time.time()_just_before_enqueue``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "project"
sys.path.insert(0, str(PROJECT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchproject.settings")

# How each system is inspected in SQL: rows done (any terminal state), rows failed,
# last finish time, and (where the row has them) enqueued/started columns.


def _row_adapter(table: str, done: str, failed: str) -> dict[str, str | None]:
    """SQL for a system whose job row has status, enqueued_at, started_at and finished_at."""
    return {
        "done": f"SELECT count(*) FROM {table} WHERE status IN ({done})",
        "failed": f"SELECT count(*) FROM {table} WHERE status IN ({failed})",
        "last_finish": f"SELECT extract(epoch FROM max(finished_at)) FROM {table}",
        "row_latency": f"SELECT extract(epoch FROM started_at - enqueued_at) FROM {table} WHERE id = %s",
        "first_start": f"SELECT extract(epoch FROM min(started_at)) FROM {table}",
    }


ADAPTERS: dict[str, dict[str, str | None]] = {
    "ours": _row_adapter("bourbon_jobs_job", "'succeeded','failed','cancelled'", "'failed','cancelled'"),
    "tasks_db": _row_adapter("django_tasks_database_dbtaskresult", "'SUCCESSFUL','FAILED'", "'FAILED'"),
    "ox": _row_adapter("django_ox_oxtask", "'SUCCESSFUL','FAILED','LOST'", "'FAILED','LOST'"),
    "djqueue": {
        "done": (
            "SELECT (SELECT count(*) FROM dj_queue_jobs WHERE finished_at IS NOT NULL)"
            " + (SELECT count(*) FROM dj_queue_failed_executions)"
        ),
        "failed": "SELECT count(*) FROM dj_queue_failed_executions",
        "last_finish": "SELECT extract(epoch FROM max(finished_at)) FROM dj_queue_jobs",
        # dj_queue keeps no started_at on the job row (the claimed execution row is deleted).
        "row_latency": None,
        "first_start": None,
    },
}


def worker_commands(system: str, processes: int, burst: bool) -> tuple[list[list[str]], str]:
    """Return (commands to spawn, human description) for one phase."""
    manage = [sys.executable, str(PROJECT / "manage.py")]
    if system == "ours":
        cmd = [*manage, "runworkers", "--processes", str(processes), "-v", "0"]
        if burst:
            cmd.append("--burst")
        return [cmd], " ".join(cmd[2:])
    if system == "tasks_db":
        # db_worker is one process running one task at a time; start N of them.
        cmd = [*manage, "db_worker", "--no-startup-delay", "--no-reload", "-v", "0"]
        if burst:
            cmd.append("--batch")
        return [list(cmd) for _ in range(processes)], f"{processes} x " + " ".join(cmd[2:])
    if system == "ox":
        # ox_worker --batch is "single process only", so the drain uses its own supervisor
        # (--processes N), polled until done, then SIGTERM.
        cmd = [*manage, "ox_worker", "--processes", str(processes), "-v", "0"]
        return [cmd], " ".join(cmd[2:])
    if system == "djqueue":
        # Worker processes/threads come from TASKS OPTIONS (see benchproject/settings.py).
        cmd = [*manage, "dj_queue", "-v", "0"]
        return [cmd], " ".join(
            cmd[2:]
        ) + f"  (OPTIONS workers: processes={processes}, threads=" + os.environ.get(
            "BENCH_DJQUEUE_THREADS", "1"
        ) + ", polling_interval=0.1)"
    raise SystemExit(f"unknown system {system}")


def has_burst(system: str) -> bool:
    return system in ("ours", "tasks_db")


class Workers:
    def __init__(self, cmds: list[list[str]], log_path: Path) -> None:
        self.log = open(log_path, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.procs = [
            subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            for cmd in cmds
        ]

    def all_exited(self) -> bool:
        return all(p.poll() is not None for p in self.procs)

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.all_exited():
                return True
            time.sleep(0.02)
        return self.all_exited()

    def stop(self, grace: float = 15.0) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        if not self.wait(grace):
            for p in self.procs:
                if p.poll() is None:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            self.wait(5)
        self.log.close()

    def session_pids(self) -> list[int]:
        sids = {p.pid for p in self.procs}
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.getsid(int(entry)) in sids:
                        pids.append(int(entry))
                except OSError:
                    pass
        return pids


def postgres_cpu_seconds() -> float | None:
    """Total CPU of all postgres processes, plus what exited backends left in the postmaster."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    found = False
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        if not comm.startswith("postgres"):
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        total += utime + stime + cutime + cstime
        found = True
    return total / tick if found else None


def children_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def scalar(sql: str, params: tuple = ()) -> object:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def enqueue_jobs(n: int) -> float:
    from benchapp.tasks import noop
    from django.db import transaction

    t0 = time.perf_counter()
    done = 0
    while done < n:
        chunk = min(1000, n - done)
        with transaction.atomic():
            for _ in range(chunk):
                noop.enqueue()
        done += chunk
    return time.perf_counter() - t0


def drain(system: str, n: int, processes: int, deadline: float, logdir: Path) -> dict:
    adapter = ADAPTERS[system]
    enqueue_s = enqueue_jobs(n)
    pending = n - int(scalar(adapter["done"]))
    if pending != n:
        raise SystemExit(f"expected {n} pending jobs after enqueue, found {pending}")
    from django.db import connection

    connection.close()
    cmds, desc = worker_commands(system, processes, burst=has_burst(system))
    cpu_children0 = children_cpu_seconds()
    pg0 = postgres_cpu_seconds()
    t_wall0 = time.time()
    t0 = time.monotonic()
    workers = Workers(cmds, logdir / f"{system}-drain.log")
    worker_cpu_live = None
    done = 0
    timed_out = False
    while True:
        time.sleep(0.1)
        done = int(scalar(adapter["done"]))
        if done >= n:
            break
        if time.monotonic() - t0 > deadline:
            timed_out = True
            break
        if has_burst(system) and workers.all_exited():
            # Burst workers left with work still pending: record and stop.
            timed_out = True
            break
    t_poll = time.monotonic() - t0
    exit_s = None
    if has_burst(system) and not timed_out:
        if workers.wait(60):
            exit_s = time.monotonic() - t0
    else:
        # Sample CPU of the live workers before stopping them.
        worker_cpu_live = _session_cpu(workers.session_pids())
    workers.stop()
    pg1 = postgres_cpu_seconds()
    worker_cpu = children_cpu_seconds() - cpu_children0
    if worker_cpu_live is not None:
        # Terminated workers' CPU is counted in RUSAGE_CHILDREN only if the supervisor
        # reaped its children; use the larger of the two views.
        worker_cpu = max(worker_cpu, worker_cpu_live)
    last_finish = scalar(adapter["last_finish"])
    failed = int(scalar(adapter["failed"]))
    drain_s = (float(last_finish) - t_wall0) if last_finish is not None else None
    first_start = scalar(adapter["first_start"]) if adapter["first_start"] else None
    boot_s = (float(first_start) - t_wall0) if first_start is not None else None
    return {
        "command": desc,
        "burst": has_burst(system),
        "enqueue_s": round(enqueue_s, 3),
        "done": done,
        "failed": failed,
        "timed_out": timed_out,
        "drain_s": round(drain_s, 3) if drain_s else None,
        "drain_poll_s": round(t_poll, 3),
        # Spawn -> first job started (interpreter + Django start-up), where rows have started_at.
        "boot_s": round(boot_s, 3) if boot_s is not None else None,
        "exit_s": round(exit_s, 3) if exit_s else None,
        "rate": round(done / drain_s, 1) if drain_s and not timed_out else None,
        "worker_cpu_s": round(worker_cpu, 2),
        "postgres_cpu_s": round(pg1 - pg0, 2) if pg0 is not None and pg1 is not None else None,
    }


def _session_cpu(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += sum(int(x) for x in fields[11:15])
    return total / tick


def wait_result(result_id: str, timeout: float = 15.0):
    from django.tasks import default_task_backend

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = default_task_backend.get_result(result_id)
        if res.is_finished:
            return res
        time.sleep(0.01)
    return None


def latency(system: str, samples: int, processes: int, logdir: Path) -> dict:
    from benchapp.tasks import stamp
    from django.db import connection

    adapter = ADAPTERS[system]
    cmds, desc = worker_commands(system, processes, burst=False)
    connection.close()
    workers = Workers(cmds, logdir / f"{system}-latency.log")
    try:
        # Warm up: the workers are up once they ran one job; then let them go idle.
        warm = stamp.enqueue()
        if wait_result(warm.id, timeout=60) is None:
            return {"command": desc, "error": "warm-up job did not finish in 60 s"}
        time.sleep(2.0)
        rng = random.Random(1234)
        lat_ms: list[float] = []
        row_ms: list[float] = []
        misses = 0
        for _ in range(samples):
            # The gap spans 1 s, the default poll interval of the polling systems, so the
            # enqueue lands at a uniformly random phase of their poll loop.
            time.sleep(rng.uniform(0.2, 1.2))
            t_enq = time.time()
            res = stamp.enqueue()
            done = wait_result(res.id)
            if done is None or done.return_value is None:
                misses += 1
                continue
            lat_ms.append((float(done.return_value) - t_enq) * 1000)
            if adapter["row_latency"]:
                v = scalar(adapter["row_latency"], (str(res.id),))
                if v is not None:
                    row_ms.append(float(v) * 1000)
    finally:
        connection.close()
        workers.stop()

    def pct(values: list[float], q: float) -> float | None:
        if not values:
            return None
        if len(values) == 1:
            return round(values[0], 1)
        return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 1)

    return {
        "command": desc,
        "samples": len(lat_ms),
        "misses": misses,
        "p50_ms": pct(lat_ms, 50),
        "p95_ms": pct(lat_ms, 95),
        "max_ms": round(max(lat_ms), 1) if lat_ms else None,
        "row_p50_ms": pct(row_ms, 50),
        "row_p95_ms": pct(row_ms, 95),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("system", choices=sorted(ADAPTERS))
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--latency-samples", type=int, default=50)
    parser.add_argument("--deadline", type=float, default=300.0)
    parser.add_argument("--logdir", default=str(HERE / "results"))
    parser.add_argument("--skip-drain", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    logdir = Path(args.logdir)
    logdir.mkdir(parents=True, exist_ok=True)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    out: dict = {"system": args.system}
    if not args.skip_drain:
        out["drain"] = drain(args.system, args.jobs, args.processes, args.deadline, logdir)
    if not args.skip_latency and args.latency_samples > 0:
        out["latency"] = latency(args.system, args.latency_samples, args.processes, logdir)
    print("BENCH-RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
