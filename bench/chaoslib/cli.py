"""The command line: options, their defaults, and ``main``.

:func:`parse_args` reads the options and fills in the defaults that depend on
``--short``; :func:`main` makes the work directory, starts the services, migrates, runs
each scenario in turn (printing its row as it ends), cleans everything up, prints the
report, and returns 1 when a bar is broken, else 0.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from .config import log
from .db import migrate
from .harness import Run
from .processes import cleanup, install_exit_handlers, on_exit
from .report import print_report, table
from .rows import Row
from .scenarios import SCENARIOS, run_scenario
from .services import start_services

DESCRIPTION = "Chaos run of ``manage.py runworkers``: kill, pause and starve its processes, count the damage."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
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
    return parser


def _apply_defaults(args: argparse.Namespace) -> None:
    """The defaults that depend on ``--short``."""
    args.jobs = args.jobs or (800 if args.short else 20000)
    args.sleep_ms = args.sleep_ms if args.sleep_ms is not None else (100 if args.short else 5)
    args.deadline = args.deadline or (40.0 if args.short else 120.0)
    args.pg_pause = 6.0 if args.short else 10.0
    args.redis_down = 5.0 if args.short else 10.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.scenarios = [int(n) for n in args.scenarios.split(",") if n.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from 1-7")
    _apply_defaults(args)
    return args


def _make_workdir(keep: bool) -> Path:
    """A temporary directory for the cluster and the logs, removed at exit unless ``keep``."""
    workdir = Path(tempfile.mkdtemp(prefix="bourbon-chaos-"))
    workdir.chmod(0o755)  # the postgres user must reach its data directory
    if keep:
        on_exit(lambda: log(f"kept {workdir}"))
    else:
        on_exit(lambda: shutil.rmtree(workdir, ignore_errors=True))
    return workdir


def _run_all(run: Run) -> list[Row]:
    """Every chosen scenario in turn, each row's line printed as it ends."""
    rows = []
    for number in run.args.scenarios:
        rows.append(run_scenario(run, number))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_exit_handlers()
    workdir = _make_workdir(args.keep)
    try:
        pg, redis = start_services(workdir)
        conf = migrate(pg.port, redis.url, workdir)
        run = Run(args, workdir, pg, redis, conf.LEASE_SECONDS, conf.RESCUE_INTERVAL)
        rows = _run_all(run)
    finally:
        cleanup()
    print_report(rows, run.limit, conf, args.json)
    return 1 if any(r.broken for r in rows) else 0
