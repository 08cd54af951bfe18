"""The seven scenarios by number, and how one of them is run and measured.

:data:`SCENARIOS` maps each number to its name, its body and the ``max_attempts`` of its
plain jobs. :func:`run_scenario` starts it from empty tables and a fresh ``starts-N.log``,
runs the body, waits until every job is final, measures the row and checks its bars; a
scenario that raises still gives a row, and its pools are closed whatever happens.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from .config import log
from .db import reset_tables
from .harness import Run
from .jobs import wait_until_settled
from .kills import scenario_kills
from .measure import check_bars, measure
from .outages import scenario_pg_pause, scenario_pg_stop, scenario_redis
from .poison import poison_fault_end, scenario_poison
from .pool_faults import scenario_pool_pause, scenario_sigterm
from .rows import Row, Scenario

SCENARIOS: dict[int, tuple[str, Callable[[Run, Scenario], None], int]] = {
    1: ("worker and supervisor SIGKILLs", scenario_kills, 1),
    2: ("PostgreSQL stopped 5 s (immediate)", scenario_pg_stop, 3),
    3: ("PostgreSQL SIGSTOPped", scenario_pg_pause, 3),
    4: ("Redis SIGKILLed and restarted", scenario_redis, 3),
    5: ("one pool SIGSTOPped past its lease", scenario_pool_pause, 3),
    6: ("SIGTERM, grace 5 s then 0.5 s", scenario_sigterm, 3),
    7: ("poison jobs among plain ones", scenario_poison, 3),
}


def _fresh_start(run: Run, number: int) -> None:
    """Empty tables, and a starts log of the scenario's own (kept with --keep)."""
    reset_tables()
    starts = run.workdir / f"starts-{number}.log"
    starts.write_text("")
    os.environ["CHAOS_STARTS"] = str(starts)


def _settle_and_measure(run: Run, number: int, scenario: Scenario) -> Row:
    settled_at = wait_until_settled(run.args.deadline)
    if number == 7:
        scenario.fault_end = poison_fault_end()
    row = measure(scenario, run.limit, settled_at)
    row.broken = check_bars(row)
    return row


def run_scenario(run: Run, number: int) -> Row:
    name, body, plain_attempts = SCENARIOS[number]
    log(f"scenario {number}: {name}")
    _fresh_start(run, number)
    scenario = Scenario(Row(number, name, plain_attempts))
    try:
        body(run, scenario)
        row = _settle_and_measure(run, number, scenario)
    except Exception as exc:  # noqa: BLE001  (one broken scenario still leaves the others' rows)
        log(f"scenario {number} raised {exc!r}")
        row = scenario.row
        row.broken = [f"harness error: {exc!r}"]
    finally:
        run.close_pools()
    row.seconds = round(time.monotonic() - scenario.started, 1)
    log(f"scenario {number} done in {row.seconds}s: " + ("ok" if not row.broken else ", ".join(row.broken)))
    return row
