"""``bench/chaos.py --short``: workers SIGKILLed, PostgreSQL stopped, poison jobs; the bars hold.

The chaos command starts its own PostgreSQL cluster and redis-server on spare ports
(never the machine's) and its own ``runworkers`` pools, so this test needs no
database fixture; it runs when the suite runs on PostgreSQL, whose server binaries
it then borrows, and under tox in one such environment per run (``once_per_run``).
It takes about 30 s (at most a few minutes on a slow machine).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import once_per_run

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path(
    os.environ.get("CHAOS_PG_BIN")
    or max(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), default="/usr/bin")
)
"""PostgreSQL's server binaries (``initdb``, ``pg_ctl``): Debian's newest, or ``CHAOS_PG_BIN``."""
SCENARIOS = "1,2,7"
TIMEOUT = 300

pytestmark = [
    pytest.mark.slow,
    once_per_run,
    pytest.mark.skipif(
        os.environ.get("BOURBON_TEST_DB") != "postgres",
        reason="the chaos run is PostgreSQL's (BOURBON_TEST_DB=postgres)",
    ),
    pytest.mark.skipif(
        not (PG_BIN / "initdb").exists() or shutil.which("redis-server") is None,
        reason=f"needs PostgreSQL's server binaries in {PG_BIN} (CHAOS_PG_BIN) and redis-server",
    ),
]


def run_chaos() -> tuple[dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "BOURBON_"))}
    proc = subprocess.run(
        [sys.executable, "bench/chaos.py", "--short", "--scenarios", SCENARIOS, "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    output = proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("CHAOS-RESULT ")]
    assert proc.returncode in (0, 1) and lines, f"chaos.py crashed (exit {proc.returncode}):\n{output}"
    return json.loads(lines[-1].removeprefix("CHAOS-RESULT ")), output


def test_chaos_short_run_keeps_every_job() -> None:
    result, output = run_chaos()
    rows = {row["scenario"]: row for row in result["rows"]}
    assert sorted(rows) == [1, 2, 7], output
    for number, row in rows.items():
        assert not [b for b in row["broken"] if b.startswith("harness error")], output
        bars = {
            "lost": row["lost"],
            "stuck": row["stuck"],
            "failed_not_made_to_fail": row["failed_not_made_to_fail"],
            "same_claim_twice": row["same_claim_twice"],
            "poison_not_failed": row["poison_not_failed"],
        }
        assert bars == dict.fromkeys(bars, 0), f"scenario {number}: {bars}\n{output}"
    poison = rows[7]["poison"]
    assert rows[7]["poison_jobs"] >= 4 and poison, output
    for kind, outcomes in poison.items():
        assert all(status.startswith("failed") for status in outcomes), f"{kind}: {outcomes}\n{output}"
