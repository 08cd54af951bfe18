"""The dashboard's throughput chart: stacked bars per minute, drawn server-side as SVG (works offline)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

WIDTH = 720
HEIGHT = 160
AXIS = 20
"""Pixels under the bars for the time labels."""


@dataclass(frozen=True)
class Minute:
    start: datetime
    succeeded: int
    failed: int


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    succeeded_y: float
    succeeded_height: float
    failed_y: float
    failed_height: float
    label: str


def bars(minutes: Sequence[Minute]) -> list[Bar]:
    """One stacked bar per minute, scaled to the busiest minute; failures on top in red."""
    peak = max((m.succeeded + m.failed for m in minutes), default=0) or 1
    slot = WIDTH / max(len(minutes), 1)
    plot = HEIGHT - AXIS
    drawn = []
    for index, minute in enumerate(minutes):
        ok_height = plot * minute.succeeded / peak
        failed_height = plot * minute.failed / peak
        drawn.append(
            Bar(
                x=round(index * slot + 1, 1),
                width=round(max(slot - 2, 1), 1),
                succeeded_y=round(plot - ok_height, 1),
                succeeded_height=round(ok_height, 1),
                failed_y=round(plot - ok_height - failed_height, 1),
                failed_height=round(failed_height, 1),
                label=f"{minute.start:%H:%M}: {minute.succeeded} succeeded, {minute.failed} failed",
            )
        )
    return drawn


def ticks(minutes: Sequence[Minute], every: int = 10) -> list[tuple[float, str]]:
    """Time labels under every ``every``-th bar."""
    slot = WIDTH / max(len(minutes), 1)
    return [(round(i * slot, 1), f"{m.start:%H:%M}") for i, m in enumerate(minutes) if i % every == 0]
