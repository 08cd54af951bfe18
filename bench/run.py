"""Issue 5's benchmark: django-bourbon-jobs vs other Tasks backends, Celery, RQ and Dramatiq.

Run from the repository root:

    python3.12 bench/run.py --docs docs/performance.md   # everything, ~15 minutes
    python3.12 bench/run.py --scenario compare --systems ours,vtasks --skip-latency
    python3.12 bench/run.py --scenario backlog            # ours: 100k backlog, 1M history
    python3.12 bench/run.py --scenario workflow           # ours: a group of 10,000 with one callback

Each system gets its own virtualenv ``bench/.venv-<name>/`` (created here with Python
3.12, packages installed with pip; ``ours_redis`` shares ``.venv-ours``), a fresh
PostgreSQL database ``bench_<name>`` on 127.0.0.1:5432 (user postgres) and, if it uses
Redis, its own Redis db number (FLUSHDB before it runs). The per-system work is done by
``bench/driver.py`` running inside that virtualenv against the tiny project in
``bench/project/``. Uses only the standard library.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DJANGO = "Django==6.1.3"

# What each system's virtualenv gets. Versions are pinned to what the README reports;
# bump them deliberately.
SYSTEMS: dict[str, dict] = {
    "ours": {
        "label": "django-bourbon-jobs",
        "install": ["-e", f"{REPO}[postgres,redis]", DJANGO],
        "dists": ["django-bourbon-jobs", "Django", "psycopg", "django-redis", "redis"],
        "redis_db": 1,
    },
    "ours_redis": {
        "label": "django-bourbon-jobs + Redis",
        "venv": "ours",
        "dists": ["django-bourbon-jobs", "Django", "psycopg", "django-redis", "redis"],
        "redis_db": 1,
    },
    "tasks_db": {
        "label": "django-tasks-db",
        "install": ["django-tasks-db==0.13.0", DJANGO, "psycopg[binary]"],
        "dists": ["django-tasks-db", "Django", "psycopg"],
    },
    "ox": {
        "label": "django-ox",
        "install": ["django-ox==1.9.1", DJANGO, "psycopg[binary]"],
        "dists": ["django-ox", "Django", "psycopg"],
    },
    "djqueue": {
        "label": "dj-queue",
        "install": ["dj-queue[postgres]==0.14.2", DJANGO, "psycopg[binary]"],
        "dists": ["dj-queue", "Django", "psycopg"],
    },
    "vtasks": {
        "label": "django-vtasks",
        "install": ["django-vtasks[valkey]==3.2.0", DJANGO, "psycopg[binary]", "redis"],
        "dists": ["django-vtasks", "django-vcache", "Django", "psycopg"],
        "redis_db": 2,
    },
    "celery": {
        "label": "Celery",
        "install": ["celery[redis]==5.7.0", "django-celery-results==2.6.0", DJANGO, "psycopg[binary]"],
        "dists": ["celery", "django-celery-results", "kombu", "redis", "Django", "psycopg"],
        "redis_db": 3,
    },
    "rq": {
        "label": "RQ",
        "install": ["rq==2.12.0", DJANGO, "psycopg[binary]"],
        "dists": ["rq", "redis", "Django", "psycopg"],
        "redis_db": 4,
    },
    "dramatiq": {
        "label": "Dramatiq",
        "install": ["dramatiq[redis]==2.2.1", DJANGO, "psycopg[binary]"],
        "dists": ["dramatiq", "redis", "Django", "psycopg"],
        "redis_db": 5,
    },
}
DEFAULT_SYSTEMS = "ours,ours_redis,tasks_db,ox,djqueue,vtasks,celery,rq,dramatiq"
# Peers: everything but ours in its two configurations.
OURS = ("ours", "ours_redis")


def venv_name(name: str) -> str:
    return SYSTEMS[name].get("venv", name)


def redis_url(name: str) -> str | None:
    db = SYSTEMS[name].get("redis_db")
    return f"redis://127.0.0.1:6379/{db}" if db is not None else None


def flush_redis(db: int) -> None:
    """SELECT db + FLUSHDB over a plain socket (never FLUSHALL: other users share the server)."""
    import socket

    def cmd(*parts: str) -> bytes:
        return b"".join([f"*{len(parts)}\r\n".encode()] + [f"${len(p)}\r\n{p}\r\n".encode() for p in parts])

    with socket.create_connection(("127.0.0.1", 6379), timeout=5) as sock:
        sock.sendall(cmd("SELECT", str(db)) + cmd("FLUSHDB"))
        reply = b""
        while reply.count(b"\r\n") < 2:
            chunk = sock.recv(1024)
            if not chunk:
                break
            reply += chunk
    if reply.count(b"+OK") != 2:
        raise RuntimeError(f"Redis SELECT {db} / FLUSHDB failed: {reply!r}")


def find_python(explicit: str | None) -> str:
    candidates = [explicit] if explicit else []
    candidates += [shutil.which("python3.12"), "/root/.pyenv/versions/3.12.1/bin/python"]
    for cand in candidates:
        if not cand or not os.path.exists(cand):
            continue
        try:
            out = subprocess.run(
                [cand, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                cwd=REPO,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            continue
        if out == "3.12":
            return cand
    raise SystemExit(
        "no Python 3.12 found (tried --python, python3.12, /root/.pyenv/versions/3.12.1/bin/python)"
    )


def venv_python(name: str) -> Path:
    return HERE / f".venv-{venv_name(name)}" / "bin" / "python"


def prepare_venv(name: str, base_python: str, install: bool) -> str:
    """Create ``bench/.venv-<name>`` if missing and pip-install the system into it."""
    vpy = venv_python(name)
    log = []
    if not vpy.exists():
        subprocess.run([base_python, "-m", "venv", str(vpy.parent.parent)], check=True, cwd=REPO)
        log.append("created venv")
        install = True
    if install:
        cmd = [
            str(vpy),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *SYSTEMS[name]["install"],
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0:
            raise RuntimeError(f"pip install for {name} failed:\n{proc.stdout}\n{proc.stderr}")
        log.append("pip install " + " ".join(SYSTEMS[name]["install"]))
    return f"{name}: " + (", ".join(log) or "venv reused (--skip-install)")


def versions(name: str) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for d in sys.argv[1:]:\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: out[d] = 'missing'\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [str(venv_python(name)), "-c", code, *SYSTEMS[name]["dists"]],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout)


def ours_revision() -> str:
    """The commit ours was measured at, plus '+dirty' if the package has local changes (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "django_bourbon_jobs"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine() -> dict[str, str]:
    def sh(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "?"

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = sh(["free", "-h"]).splitlines()
    return {
        "nproc": sh(["nproc"]),
        "cpu": cpu,
        "memory": mem[1].split()[1] if len(mem) > 1 else "?",
        "kernel": platform.release(),
        "postgresql": sh(["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SHOW server_version"]),
        "redis": sh(["redis-cli", "-h", "127.0.0.1", "INFO", "server"]).split("redis_version:")[-1].split()[0]
        if shutil.which("redis-cli")
        else "?",
        "python": sh([str(venv_python("ours")), "-c", "import platform; print(platform.python_version())"]),
    }


def reset_database(name: str, db: str) -> None:
    code = (
        "import psycopg, sys\n"
        "with psycopg.connect(host='127.0.0.1', port=5432, user='postgres', dbname='postgres',"
        " autocommit=True) as c:\n"
        "    c.execute(f'DROP DATABASE IF EXISTS {sys.argv[1]} WITH (FORCE)')\n"
        "    c.execute(f'CREATE DATABASE {sys.argv[1]}')\n"
    )
    subprocess.run([str(venv_python(name)), "-c", code, db], check=True)


def run_driver(name: str, args: argparse.Namespace, logdir: Path, tag: str, scenario: str) -> dict:
    db = f"bench_{name}" if scenario == "compare" else f"bench_{name}_{scenario}"
    reset_database(name, db)
    url = redis_url(name)
    if url:
        flush_redis(SYSTEMS[name]["redis_db"])
    env = {
        **os.environ,
        "BENCH_SYSTEM": name,
        "BENCH_DB": db,
        "BENCH_CONN_MAX_AGE": str(args.conn_max_age),
        "BENCH_PROCESSES": str(args.processes),
        "BENCH_DJQUEUE_THREADS": str(args.djqueue_threads),
        "BENCH_REDIS_URL": url or "",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    cmd = [
        str(venv_python(name)),
        str(HERE / "driver.py"),
        name,
        "--scenario",
        scenario,
        "--jobs",
        str(args.jobs),
        "--single-jobs",
        str(args.single_jobs),
        "--processes",
        str(args.processes),
        "--latency-samples",
        str(args.latency_samples),
        "--deadline",
        str(args.deadline),
        "--logdir",
        str(logdir / tag),
        "--vtasks-concurrency",
        str(args.vtasks_concurrency),
        "--dramatiq-threads",
        str(args.dramatiq_threads),
        "--backlog",
        str(args.backlog),
        "--history",
        str(args.history),
        "--backlog-measure",
        str(args.backlog_measure),
        "--backlog-rounds",
        str(args.backlog_rounds),
        "--fan-in",
        str(args.fan_in),
        "--workflow-rounds",
        str(args.workflow_rounds),
    ]
    if name == "ours" and scenario == "compare" and args.scaling:
        cmd += ["--scaling", args.scaling]
    if args.skip_latency:
        cmd.append("--skip-latency")
    t0 = time.monotonic()
    (logdir / tag).mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=args.deadline * 3 + 600
        )
        output = proc.stdout + proc.stderr
        rc: int | str = proc.returncode
    except subprocess.TimeoutExpired as exc:
        output = f"{exc.stdout or ''}{exc.stderr or ''}"
        rc = "timeout"
    (logdir / tag / f"{name}-{scenario}-driver.log").write_text(str(output))
    for line in str(output).splitlines():
        if line.startswith("BENCH-RESULT "):
            result = json.loads(line[len("BENCH-RESULT ") :])
            result["wall_s"] = round(time.monotonic() - t0, 1)
            return result
    tail = "\n".join(str(output).splitlines()[-15:])
    return {"system": name, "error": f"driver exited {rc} without a result:\n{tail}"}


# --------------------------------------------------------------------------- report


def fmt(value, spec: str = "", dash: str = "-") -> str:
    if value is None:
        return dash
    return format(value, spec)


def median_or_none(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def g(res: dict | None, *path):
    for key in path:
        if not isinstance(res, dict):
            return None
        res = res.get(key)
    return res


def table_rows(systems: list[str], run: dict[str, dict]) -> list[list[str]]:
    ours_rate = g(run.get("ours"), "drain", "rate")
    rows = []
    for name in systems:
        res = run.get(name)
        if res is None:
            continue
        if "error" in res:
            rows.append([name, "ERROR: " + res["error"].splitlines()[0]])
            continue
        rate = g(res, "drain", "rate")
        bulk = g(res, "enqueue", "bulk_rate")
        timed_out = g(res, "drain", "timed_out")
        rows.append(
            [
                name,
                fmt(bulk, ",.0f", "n/a"),
                fmt(g(res, "enqueue", "single_rate"), ",.0f"),
                fmt(g(res, "drain", "drain_s"), ".2f") + (" (timed out)" if timed_out else ""),
                fmt(rate, ",.0f"),
                fmt(rate / ours_rate if rate and ours_rate else None, ".2f"),
                fmt(g(res, "latency", "p50_ms"), ".1f"),
                fmt(g(res, "latency", "p95_ms"), ".1f"),
                fmt(g(res, "drain", "peak_rss_mb"), ".0f"),
                fmt(g(res, "drain", "peak_pss_mb"), ".0f"),
                fmt(g(res, "drain", "processes"), "d"),
                fmt(g(res, "drain", "worker_cpu_s"), ".1f"),
                fmt(g(res, "drain", "postgres_cpu_s"), ".1f"),
                str(g(res, "drain", "failed")),
            ]
        )
    return rows


MAIN_HEADER = [
    "system",
    "bulk enq/s",
    "single enq/s",
    "drain s",
    "drain jobs/s",
    "x ours",
    "p50 ms",
    "p95 ms",
    "peak RSS MB",
    "peak PSS MB",
    "procs",
    "wrk CPU s",
    "PG CPU s",
    "failed",
]


def markdown(header: list[str], rows: list[list[str]]) -> str:
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    for r in rows:
        lines.append("| " + " | ".join(r + [""] * (len(header) - len(r))) + " |")
    return "\n".join(lines)


def plain(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows if i < len(r))) for i in range(len(header))]
    pairs = enumerate(zip(header, widths, strict=True))
    out = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in pairs)]
    out.append("-" * len(out[0]))
    for r in rows:
        out.append("  ".join(c.rjust(widths[i]) if i else c.ljust(widths[i]) for i, c in enumerate(r)))
    return "\n".join(out)


def bars(run: dict[str, dict], backlog: dict | None) -> list[str]:
    out = []
    ours = g(run.get("ours"), "drain", "rate")
    peers = {n: g(r, "drain", "rate") for n, r in run.items() if n not in OURS}
    best_peer = max(((r, n) for n, r in peers.items() if r), default=(None, None))
    if ours and best_peer[0]:
        ok = ours > best_peer[0]
        out.append(
            f"drain rate above every peer: {'MET' if ok else 'NOT MET'} "
            f"(ours {ours:,.0f} jobs/s; best peer {best_peer[1]} {best_peer[0]:,.0f}"
            f" = {best_peer[0] / ours:.2f}x ours)"
        )
    tdb = peers.get("tasks_db")
    if ours and tdb:
        out.append(
            f"drain rate >= 5x db_worker: {'MET' if ours >= 5 * tdb else 'NOT MET'}"
            f" ({ours / tdb:.1f}x tasks_db)"
        )
    for name, what in (("ours_redis", "with Redis"), ("ours", "with LISTEN/NOTIFY")):
        p50 = g(run.get(name), "latency", "p50_ms")
        if p50 is not None:
            out.append(f"pickup p50 < 5 ms {what}: {'MET' if p50 < 5 else 'NOT MET'} ({p50:.1f} ms)")
    bulk = g(run.get("ours"), "enqueue", "bulk_rate")
    if bulk:
        out.append(
            f"bulk enqueue >= 20,000 jobs/s on PostgreSQL: {'MET' if bulk >= 20000 else 'NOT MET'}"
            f" ({bulk:,.0f} jobs/s)"
        )
    ratio = g(backlog, "ratio")
    if ratio:
        out.append(
            f"big backlog + history drain within 20% of empty: {'MET' if ratio >= 0.8 else 'NOT MET'} "
            f"({ratio:.2f}x the empty-table rate)"
        )
    return out


def report(
    systems: list[str],
    runs: list[dict[str, dict]],
    backlog: dict | None,
    vers: dict,
    mach: dict,
    args: argparse.Namespace,
    command: str,
) -> str:
    """The whole result as Markdown (also printed)."""
    lines = [
        f"Command: `{command}` (from the repository root), {dt.datetime.now():%Y-%m-%d %H:%M}.",
        "",
        f"Machine: {mach['nproc']} cores ({mach['cpu']}), {mach['memory']} RAM, Linux {mach['kernel']},"
        f" PostgreSQL {mach['postgresql']} and Redis {mach['redis']} on 127.0.0.1, Python {mach['python']}.",
        "",
        "Versions:",
        "",
    ]
    for s in systems:
        if s in vers:
            lines.append(f"- `{s}`: " + ", ".join(f"{k} {v}" for k, v in vers[s].items()))
    lines.append("")
    for i, run in enumerate(runs, 1):
        title = f"run {i} of {len(runs)}" if len(runs) > 1 else "one run"
        lines += [
            f"Compare ({title}): {args.jobs:,} no-op jobs, {args.processes} worker processes each;"
            f" single enqueue over {args.single_jobs:,} jobs;"
            f" pickup latency over {args.latency_samples} jobs:",
            "",
            markdown(MAIN_HEADER, table_rows(systems, run)),
            "",
        ]
        cmds = [(n, g(run.get(n), "drain", "command"), g(run.get(n), "enqueue", "bulk_api")) for n in systems]
        lines += ["Commands and bulk APIs:", ""]
        lines += [f"- `{n}`: `{c}`; bulk: {b}" for n, c, b in cmds if c]
        lines.append("")
        sc = g(run.get("ours"), "scaling")
        if sc:
            base = g(sc, str(args.processes), "rate")
            rows = [
                [
                    p,
                    fmt(g(sc, p, "drain_s"), ".2f"),
                    fmt(g(sc, p, "rate"), ",.0f"),
                    fmt(g(sc, p, "rate") / base if base and g(sc, p, "rate") else None, ".2f"),
                    fmt(g(sc, p, "peak_rss_mb"), ".0f"),
                    fmt(g(sc, p, "worker_cpu_s"), ".1f"),
                    fmt(g(sc, p, "postgres_cpu_s"), ".1f"),
                ]
                for p in sorted(sc, key=int)
            ]
            lines += [
                f"Ours, `runworkers --processes N --burst`, {args.jobs:,} jobs, empty table:",
                "",
                markdown(
                    [
                        "processes",
                        "drain s",
                        "jobs/s",
                        f"x {args.processes} proc",
                        "peak RSS MB",
                        "wrk CPU s",
                        "PG CPU s",
                    ],
                    rows,
                ),
                "",
            ]
    if backlog:
        b = g(backlog, "backlog")
        if b is None:
            lines += ["Backlog: ERROR " + str(backlog.get("error", "")).splitlines()[0], ""]
        else:
            rows = [
                [
                    what,
                    fmt(g(b, key, "rows_in_table"), ",d"),
                    fmt(g(b, key, "drain_s"), ".2f"),
                    fmt(g(b, key, "rate"), ",.0f"),
                    fmt(
                        g(b, key, "rate") / g(b, "empty", "rate")
                        if g(b, key, "rate") and g(b, "empty", "rate")
                        else None,
                        ".2f",
                    ),
                ]
                for what, key in (
                    ("empty table", "empty"),
                    (f"{b['backlog']:,} queued + {b['history']:,} finished", "big"),
                )
            ]
            rounds = b.get("rounds") or [b.get("ratio")]
            lines += [
                f"Ours, first {b['measure_jobs']:,} jobs drained by `runworkers --processes {args.processes}`"
                f" (not burst; rate from the {b['measure_jobs']:,}th `finished_at`;"
                f" table filled in {b.get('fill_s')} s"
                " with INSERT ... SELECT, then VACUUM ANALYZE):",
                "",
                markdown(["table", "rows at end", "drain s", "jobs/s", "x empty"], rows),
                "",
                f"{len(rounds)} rounds of (empty, big) drains, the round with the median ratio shown;"
                " every round's ratio: " + ", ".join(fmt(r, ".2f") for r in rounds) + ".",
                "",
            ]
    if runs:
        lines += ["Bars (ratios from run 1):", ""]
        lines += [f"- {b}" for b in bars(runs[0], g(backlog, "backlog"))]
        lines.append("")
    return "\n".join(lines)


WORKFLOW_HEADER = [
    "round",
    "dispatch s",
    "members s",
    "members/s",
    "plain/s",
    "x plain",
    "callback runs",
    "callback after last ms",
    "status",
]


def workflow_report(result: dict, args: argparse.Namespace) -> str:
    """The fan-in scenario: one row per round (a group of ``--fan-in`` no-ops, then one callback)."""
    if "error" in result:
        return "workflow: ERROR\n" + result["error"]
    rows = [
        [
            str(n),
            fmt(r.get("dispatch_s"), ".2f"),
            fmt(r.get("members_drain_s"), ".2f"),
            fmt(r.get("members_rate"), ",.0f"),
            fmt(r.get("plain_rate"), ",.0f"),
            fmt(r.get("members_vs_plain"), ".2f"),
            fmt(r.get("callback_runs"), "d"),
            fmt(r.get("callback_after_last_member_ms"), ".1f"),
            str(r.get("status")),
        ]
        for n, r in enumerate(g(result, "workflow", "rounds") or [], start=1)
    ]
    title = f"group of {args.fan_in:,} no-ops, then one callback; {args.processes} processes, burst"
    return title + "\n" + plain(WORKFLOW_HEADER, rows)


def write_docs(path: Path, text: str) -> None:
    """Replace the text between the BEGIN/END markers of ``path`` (or append it)."""
    begin, end = "<!-- bench:begin (written by bench/run.py --docs) -->", "<!-- bench:end -->"
    old = path.read_text() if path.exists() else ""
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end) :]
    else:
        new = (old.rstrip() + "\n\n" if old else "") + block + "\n"
    path.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", choices=["all", "compare", "backlog", "workflow"], default="all")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs in the drain test (default 10000)")
    parser.add_argument("--single-jobs", type=int, default=2_000, help="jobs in the single-enqueue test")
    parser.add_argument("--systems", default=DEFAULT_SYSTEMS, help="comma-separated subset")
    parser.add_argument("--processes", type=int, default=2, help="worker processes per system (default 2)")
    parser.add_argument("--scaling", default="1,4", help="extra process counts for ours ('' for none)")
    parser.add_argument(
        "--latency-samples", type=int, default=50, help="single-job pickups per system (default 50)"
    )
    parser.add_argument("--skip-latency", action="store_true", help="drain test only")
    parser.add_argument(
        "--repeat", type=int, default=1, help="repeat the comparison, order rotated (default 1)"
    )
    parser.add_argument(
        "--deadline", type=float, default=300.0, help="seconds allowed for one drain (default 300)"
    )
    parser.add_argument(
        "--conn-max-age", default="600", help="CONN_MAX_AGE for every system, seconds or 'none' (default 600)"
    )
    parser.add_argument("--djqueue-threads", type=int, default=1, help="dj_queue worker threads per process")
    parser.add_argument(
        "--vtasks-concurrency", type=int, default=1, help="runworker --concurrency (default 1)"
    )
    parser.add_argument("--dramatiq-threads", type=int, default=1, help="dramatiq --threads (default 1)")
    parser.add_argument("--backlog", type=int, default=100_000, help="queued jobs in the backlog scenario")
    parser.add_argument(
        "--history", type=int, default=1_000_000, help="finished rows in the backlog scenario"
    )
    parser.add_argument(
        "--backlog-measure", type=int, default=20_000, help="jobs timed in the backlog scenario"
    )
    parser.add_argument(
        "--backlog-rounds",
        type=int,
        default=3,
        help="(empty, big) drain pairs in the backlog scenario; the median ratio is reported",
    )
    parser.add_argument(
        "--fan-in", type=int, default=10_000, help="group members in the workflow scenario (one callback)"
    )
    parser.add_argument(
        "--workflow-rounds", type=int, default=3, help="fan-in rounds; the median vs-plain ratio is reported"
    )
    parser.add_argument("--skip-install", action="store_true", help="reuse existing venvs, no pip")
    parser.add_argument("--python", default=None, help="Python 3.12 used to create the venvs")
    parser.add_argument("--docs", default=None, help="also write the report into this Markdown file")
    args = parser.parse_args()

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise SystemExit(f"unknown systems {unknown}; choose from {sorted(SYSTEMS)}")
    if args.scenario in ("backlog", "workflow"):
        systems = ["ours"]

    started = time.monotonic()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    logdir = HERE / "results" / stamp
    logdir.mkdir(parents=True, exist_ok=True)

    base_python = find_python(args.python)
    print(
        f"host: {platform.node()}  cpus: {os.cpu_count()}  load: {os.getloadavg()}"
        f"  base python: {base_python}"
    )
    print(
        f"settings: CONN_MAX_AGE={args.conn_max_age}, DEBUG=False, logging at WARNING, workers run with -v 0"
    )
    needed = list(dict.fromkeys(venv_name(s) for s in [*systems, "ours"]))
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(needed)) as pool:
        futures = {pool.submit(prepare_venv, s, base_python, not args.skip_install): s for s in needed}
        for fut in concurrent.futures.as_completed(futures):
            print("  " + fut.result(), flush=True)
    vers = {s: versions(s) for s in systems}
    for s in OURS:
        if s in vers:
            vers[s]["git"] = ours_revision()
    for s in systems:
        print(f"  {s:10} " + ", ".join(f"{k} {v}" for k, v in vers[s].items()))
    mach = machine()

    runs: list[dict[str, dict]] = []
    if args.scenario in ("all", "compare"):
        for rep in range(args.repeat):
            order = systems[rep % len(systems) :] + systems[: rep % len(systems)]
            run: dict[str, dict] = {}
            for name in order:
                print(f"[run {rep + 1}/{args.repeat}] {name} ...", end=" ", flush=True)
                res = run_driver(name, args, logdir, f"run{rep + 1}", "compare")
                run[name] = res
                if "error" in res:
                    print("ERROR\n" + res["error"], flush=True)
                    continue
                print(
                    f"bulk {g(res, 'enqueue', 'bulk_rate')}/s, single {g(res, 'enqueue', 'single_rate')}/s,"
                    f" drain {g(res, 'drain', 'drain_s')} s ({g(res, 'drain', 'rate')} jobs/s),"
                    f" p50 {g(res, 'latency', 'p50_ms')} ms  [{res['wall_s']} s]",
                    flush=True,
                )
            runs.append(run)
    backlog = None
    if args.scenario in ("all", "backlog"):
        print("[backlog] ours ...", end=" ", flush=True)
        backlog = run_driver("ours", args, logdir, "backlog", "backlog")
        print(json.dumps(g(backlog, "backlog", "ratio")) + f"  [{backlog.get('wall_s')} s]", flush=True)

    workflow = None
    if args.scenario == "workflow":
        print("[workflow] ours ...", end=" ", flush=True)
        workflow = run_driver("ours", args, logdir, "workflow", "workflow")
        print(f"[{workflow.get('wall_s')} s]", flush=True)
        print(workflow_report(workflow, args))

    (logdir / "results.json").write_text(
        json.dumps(
            {
                "args": vars(args),
                "machine": mach,
                "versions": vers,
                "runs": runs,
                "backlog": backlog,
                "workflow": workflow,
            },
            indent=2,
            default=str,
        )
    )
    command = "python3.12 bench/run.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    text = report(systems, runs, backlog, vers, mach, args, command)
    (logdir / "report.md").write_text(text + "\n")
    print()
    for i, run in enumerate(runs, 1):
        print(f"== run {i}: drain {args.jobs:,} no-op jobs, {args.processes} processes ==")
        print(plain(MAIN_HEADER, table_rows(systems, run)))
        print()
    print(text)
    if args.docs:
        write_docs(Path(args.docs), text)
        print(f"(written into {args.docs})")
    print(
        f"\nraw results and worker logs: {logdir.relative_to(REPO)}"
        f"  (total {time.monotonic() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
