"""What the run prints: the table of rows, the details under it, the bars, the JSON line.

:func:`table` renders rows as a Markdown table (``main`` prints each row's line as its
scenario ends, then the whole table); :func:`details` lists each scenario's faults,
notes, error counts and example jobs; :func:`print_report` prints the final report and,
with ``--json``, the ``CHAOS-RESULT {json}`` line.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from .config import ALLOWANCE
from .rows import Row

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


def _example_lines(row: Row) -> list[str]:
    lines = []
    for kind, stories in row.examples.items():
        for story in stories:
            lines.append(f"  example, {kind}: job {story['job']} {story['status']}")
            lines += [f"    error {error}" for error in story.get("errors", [])]
            lines += [f"    execution {execution}" for execution in story.get("executions", [])]
    return lines


def _row_details(row: Row) -> list[str]:
    lines = [f"scenario {row.scenario} ({row.name}):"]
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
    return lines + _example_lines(row)


def details(rows: list[Row]) -> str:
    return "\n".join(line for row in rows for line in _row_details(row))


def print_report(rows: list[Row], limit: float, conf: Any, as_json: bool) -> None:
    """The final report: table, details, the bars; with ``as_json`` the CHAOS-RESULT line."""
    print()
    print(table(rows))
    print()
    print(details(rows))
    print(
        f"\nbars: 0 lost, 0 stuck, 0 failed not made to fail, 0 same claim twice, every poison job failed,"
        f" converged within LEASE_SECONDS + RESCUE_INTERVAL + {ALLOWANCE:g} s"
        f" = {limit:g} s of the last fault"
    )
    if as_json:
        result = {
            "ok": not any(r.broken for r in rows),
            "settings": asdict(conf),
            "rows": [asdict(r) for r in rows],
        }
        print("CHAOS-RESULT " + json.dumps(result, default=str), flush=True)
