"""Drain and pickup-latency benchmark: django-bourbon-jobs vs other database task queues.

Run from the repository root:

    python3.12 bench/run.py                       # all systems, 10,000 jobs, 2 processes
    python3.12 bench/run.py --systems ours,ox --jobs 2000 --skip-install
    python3.12 bench/run.py --repeat 2            # interleaved repeats, medians reported

Each system gets its own virtualenv ``bench/.venv-<name>/`` (created here with Python
3.12, packages installed with pip) and a fresh PostgreSQL database ``bench_<name>`` on
127.0.0.1:5432 (user postgres). The per-system work is done by ``bench/driver.py``
running inside that virtualenv against the tiny project in ``bench/project/``.
Uses only the standard library.
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
        "install": ["-e", f"{REPO}[postgres]", DJANGO],
        "dists": ["django-bourbon-jobs", "Django", "psycopg"],
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
}


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
    return HERE / f".venv-{name}" / "bin" / "python"


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


def reset_database(name: str, db: str) -> None:
    code = (
        "import psycopg, sys\n"
        "with psycopg.connect(host='127.0.0.1', port=5432, user='postgres', dbname='postgres',"
        " autocommit=True) as c:\n"
        "    c.execute(f'DROP DATABASE IF EXISTS {sys.argv[1]} WITH (FORCE)')\n"
        "    c.execute(f'CREATE DATABASE {sys.argv[1]}')\n"
    )
    subprocess.run([str(venv_python(name)), "-c", code, db], check=True)


def run_system(name: str, args: argparse.Namespace, logdir: Path, tag: str) -> dict:
    db = f"bench_{name}"
    reset_database(name, db)
    env = {
        **os.environ,
        "BENCH_SYSTEM": name,
        "BENCH_DB": db,
        "BENCH_CONN_MAX_AGE": str(args.conn_max_age),
        "BENCH_PROCESSES": str(args.processes),
        "BENCH_DJQUEUE_THREADS": str(args.djqueue_threads),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    cmd = [
        str(venv_python(name)),
        str(HERE / "driver.py"),
        name,
        "--jobs",
        str(args.jobs),
        "--processes",
        str(args.processes),
        "--latency-samples",
        str(args.latency_samples),
        "--deadline",
        str(args.deadline),
        "--logdir",
        str(logdir / tag),
    ]
    if args.skip_latency:
        cmd.append("--skip-latency")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=args.deadline + 600)
    (logdir / tag).mkdir(parents=True, exist_ok=True)
    (logdir / tag / f"{name}-driver.log").write_text(proc.stdout + proc.stderr)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            result = json.loads(line[len("BENCH-RESULT ") :])
            result["wall_s"] = round(time.monotonic() - t0, 1)
            return result
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
    return {"system": name, "error": f"driver exited {proc.returncode} without a result:\n{tail}"}


def fmt(value, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec)


def median_or_none(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def print_report(
    systems: list[str], runs: list[dict[str, dict]], vers: dict, args: argparse.Namespace
) -> None:
    print()
    print(
        f"== Drain: {args.jobs:,} no-op jobs, {args.processes} worker processes, PostgreSQL on 127.0.0.1 =="
    )
    for name in systems:
        cmds = {r[name].get("drain", {}).get("command") for r in runs if name in r}
        v = vers.get(name, {}).get(SYSTEMS[name]["dists"][0], "?")
        print(f"  {name:9} {SYSTEMS[name]['label']} {v}: {'; '.join(c for c in cmds if c)}")
    header = (
        f"{'system':9} {'run':>3} {'drain s':>8} {'jobs/s':>8} {'x ours':>7} {'boot s':>6} {'exit s':>7}"
        f" {'wrk CPU s':>9} {'pg CPU s':>8} {'enq s':>6} fail"
    )
    print(header)
    print("-" * len(header))
    per_system_rates: dict[str, list[float]] = {n: [] for n in systems}
    per_system_ratios: dict[str, list[float]] = {n: [] for n in systems}
    for i, run in enumerate(runs, 1):
        ours_rate = (run.get("ours", {}).get("drain") or {}).get("rate")
        for name in systems:
            res = run.get(name)
            if res is None:
                continue
            if "error" in res:
                print(f"{name:9} {i:>3} ERROR: {res['error'].splitlines()[0]}")
                continue
            d = res.get("drain") or {}
            rate = d.get("rate")
            ratio = rate / ours_rate if rate and ours_rate else None
            if rate:
                per_system_rates[name].append(rate)
            if ratio:
                per_system_ratios[name].append(ratio)
            note = " TIMED OUT" if d.get("timed_out") else ""
            print(
                f"{name:9} {i:>3} {fmt(d.get('drain_s'), '8.2f')} {fmt(rate, '8.0f')} {fmt(ratio, '7.2f')}"
                f" {fmt(d.get('boot_s'), '6.2f')} {fmt(d.get('exit_s'), '7.2f')}"
                f" {fmt(d.get('worker_cpu_s'), '9.1f')} {fmt(d.get('postgres_cpu_s'), '8.1f')}"
                f" {fmt(d.get('enqueue_s'), '6.1f')} {d.get('failed', '-')}{note}"
            )
    print(
        "(drain s: spawn -> last finished_at; boot s: spawn -> first started_at; exit s: spawn -> burst exit)"
    )
    if len(runs) > 1:
        print("-" * len(header))
        for name in systems:
            r = median_or_none(per_system_rates[name])
            q = median_or_none(per_system_ratios[name])
            print(f"{name:9} med {'':>8} {fmt(r, '8.0f')} {fmt(q, '7.2f')}")

    if args.skip_latency or args.latency_samples <= 0:
        return
    print()
    print(
        f"== Pickup latency, idle workers ({args.processes} processes, not burst):"
        f" {args.latency_samples} single jobs,"
        " time.time() in the task minus time.time() just before enqueue() =="
    )
    header = (
        f"{'system':9} {'run':>3} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'row p50':>8} {'row p95':>8} n"
    )
    print(header)
    print("-" * len(header))
    for i, run in enumerate(runs, 1):
        for name in systems:
            res = run.get(name)
            if res is None or "error" in res:
                continue
            lat = res.get("latency") or {}
            if "error" in lat:
                print(f"{name:9} {i:>3} ERROR: {lat['error']}")
                continue
            print(
                f"{name:9} {i:>3} {fmt(lat.get('p50_ms'), '8.1f')} {fmt(lat.get('p95_ms'), '8.1f')}"
                f" {fmt(lat.get('max_ms'), '8.1f')} {fmt(lat.get('row_p50_ms'), '8.1f')}"
                f" {fmt(lat.get('row_p95_ms'), '8.1f')} {lat.get('samples')}"
            )
    print("(row p50/p95: the job row's started_at - enqueued_at, where the row has both columns)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs in the drain test (default 10000)")
    parser.add_argument("--systems", default="ours,tasks_db,ox,djqueue", help="comma-separated subset")
    parser.add_argument("--processes", type=int, default=2, help="worker processes per system (default 2)")
    parser.add_argument(
        "--latency-samples", type=int, default=50, help="single-job pickups per system (default 50)"
    )
    parser.add_argument("--skip-latency", action="store_true", help="drain test only")
    parser.add_argument(
        "--repeat", type=int, default=1, help="repeat the whole set, order rotated (default 1)"
    )
    parser.add_argument(
        "--deadline", type=float, default=300.0, help="seconds allowed for one drain (default 300)"
    )
    parser.add_argument(
        "--conn-max-age", default="600", help="CONN_MAX_AGE for every system, seconds or 'none' (default 600)"
    )
    parser.add_argument("--djqueue-threads", type=int, default=1, help="dj_queue worker threads per process")
    parser.add_argument("--skip-install", action="store_true", help="reuse existing venvs, no pip")
    parser.add_argument("--python", default=None, help="Python 3.12 used to create the venvs")
    args = parser.parse_args()

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise SystemExit(f"unknown systems {unknown}; choose from {sorted(SYSTEMS)}")

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
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(systems)) as pool:
        futures = {pool.submit(prepare_venv, s, base_python, not args.skip_install): s for s in systems}
        for fut in concurrent.futures.as_completed(futures):
            print("  " + fut.result(), flush=True)
    vers = {s: versions(s) for s in systems}
    if "ours" in vers:
        vers["ours"]["git"] = ours_revision()
    for s in systems:
        print(f"  {s:9} " + ", ".join(f"{k} {v}" for k, v in vers[s].items()))

    runs: list[dict[str, dict]] = []
    for rep in range(args.repeat):
        order = systems[rep % len(systems) :] + systems[: rep % len(systems)]
        run: dict[str, dict] = {}
        for name in order:
            print(f"[run {rep + 1}/{args.repeat}] {name} ...", end=" ", flush=True)
            res = run_system(name, args, logdir, f"run{rep + 1}")
            run[name] = res
            if "error" in res:
                print("ERROR")
            else:
                d = res.get("drain", {})
                lat = res.get("latency", {})
                print(
                    f"drain {d.get('drain_s')} s ({d.get('rate')} jobs/s), "
                    f"p50 {lat.get('p50_ms')} ms, p95 {lat.get('p95_ms')} ms  [{res['wall_s']} s]",
                    flush=True,
                )
        runs.append(run)

    (logdir / "results.json").write_text(
        json.dumps({"args": vars(args), "versions": vers, "runs": runs}, indent=2, default=str)
    )
    print_report(systems, runs, vers, args)
    print(
        f"\nraw results and worker logs: {logdir.relative_to(REPO)}"
        f"  (total {time.monotonic() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
