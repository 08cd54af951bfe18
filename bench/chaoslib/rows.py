"""A scenario's result row, and the record a scenario keeps while it runs.

:class:`Row` holds every count, bar and note printed for one scenario (and written to
the JSON line); :class:`Scenario` is what a scenario's body fills in: the jobs it
dispatched, its faults with their times, and when the last one ended.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .config import log
from .jobs import open_jobs


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
