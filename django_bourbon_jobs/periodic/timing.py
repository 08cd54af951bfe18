"""When a schedule's runs fall: cron expressions in a time zone, and fixed intervals.

A timing answers two questions, both in aware UTC datetimes: the first scheduled time
after a moment (:meth:`next_after`) and the last one at or before it (:meth:`latest_at_or_before`).
Cron expressions are read by croniter (the ``periodic`` extra), on the wall clock of the
schedule's time zone, with cron's own rules across daylight-saving changes:

- a wall-clock time that does not exist (the clocks jump forward over it) runs once, at the
  jump, when the expression names its hour; an expression for every hour has no such hour
  that day;
- a wall-clock time that happens twice (the clocks go back) runs once, the first time, when
  the expression names its hour; an expression for every hour runs in both passes, as time
  goes by.

croniter already does the first; :class:`CronTiming` drops the second pass of a named hour,
which croniter would run twice. Intervals (``every``) are counted from the Unix epoch, so every
supervisor on every host computes the same times.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Protocol
from zoneinfo import ZoneInfo

ALIASES = ("@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight")
"""The ``@`` shorthands a cron expression may be (croniter's names)."""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LONGEST_GAP = timedelta(days=366 * 30)
"""How far back :meth:`CronTiming.latest_at_or_before` looks (29 February on a Monday recurs in 28 years)."""


class Timing(Protocol):
    def next_after(self, moment: datetime) -> datetime:
        """The first scheduled time strictly after ``moment``."""
        ...

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        """The last scheduled time at or before ``moment``, or ``None`` if there is none."""
        ...


def cron_problem(expression: object) -> str | None:
    """What is wrong with a cron expression, or ``None`` (needs croniter)."""
    from croniter import croniter

    if not isinstance(expression, str) or not expression.strip():
        return "must be a five-field cron expression such as '0 3 * * *', or an alias such as '@daily'"
    text = expression.strip()
    if text.startswith("@"):
        return None if text.lower() in ALIASES else f"is not a known alias (use one of {', '.join(ALIASES)})"
    if len(text.split()) != 5:
        return "must have five fields: minute, hour, day of month, month, day of week"
    if not croniter.is_valid(text):
        return "is not a valid cron expression"
    return _equal_range(text)


def _equal_range(text: str) -> str | None:
    """croniter reads a range whose ends are equal (``5-5``) as the whole field; cron reads one value.

    Refused rather than guessed: the expression would run every minute where one was meant.
    """
    for item in (item for field in text.split() for item in field.split(",")):
        low, dash, high = item.split("/")[0].partition("-")
        if dash and low.lower().lstrip("0") == high.lower().lstrip("0"):
            return f"has the range {item!r}, whose ends are equal: write {low!r} for that one value"
    return None


@dataclass(frozen=True)
class IntervalTiming:
    """Every ``period``, on its multiples since the Unix epoch (``every=3600`` runs on the hour, UTC)."""

    period: timedelta

    def __post_init__(self) -> None:
        if self.period <= timedelta(0):
            raise ValueError("an interval must be longer than zero")

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        return EPOCH + (moment - EPOCH) // self.period * self.period

    def next_after(self, moment: datetime) -> datetime:
        return EPOCH + ((moment - EPOCH) // self.period + 1) * self.period


@dataclass(frozen=True)
class CronTiming:
    """A cron expression on the wall clock of ``zone`` (an IANA name such as ``"Europe/Paris"``)."""

    expression: str
    zone_name: str

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.zone_name)

    @cached_property
    def every_hour(self) -> bool:
        """Whether the hour field matches every hour: then the schedule follows elapsed time across DST."""
        from croniter import croniter

        hours: list[Any] = croniter(self.expression.strip()).expanded[1]
        return hours == ["*"] or len(set(hours)) == 24

    def next_after(self, moment: datetime) -> datetime:
        from croniter import croniter

        times = croniter(self.expression.strip(), moment.astimezone(self.zone))
        while True:
            candidate = times.get_next(datetime).astimezone(UTC)
            if candidate > moment and not self._repeated_wall_time(candidate):
                return candidate

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        """Found through :meth:`next_after` alone, so the two can never disagree.

        Looks back over widening spans until one holds a scheduled time, then halves the
        span down to a second (cron's times are whole minutes apart) around the last one.
        """
        span = timedelta(minutes=2)
        while span <= LONGEST_GAP:
            if self.next_after(moment - span) <= moment:
                return self._last_between(moment - span, moment)
            span *= 4
        return None

    def _last_between(self, low: datetime, high: datetime) -> datetime:
        """The last time at or before ``high``, given that one falls after ``low``."""
        moment = high
        while high - low > timedelta(seconds=1):
            middle = low + (high - low) / 2
            if self.next_after(middle) <= moment:
                low = middle
            else:
                high = middle
        return self.next_after(low)

    def _repeated_wall_time(self, instant: datetime) -> bool:
        """The second pass of a wall-clock time the clocks went back over, in an hour the expression names."""
        if self.every_hour:
            return False
        local = instant.astimezone(self.zone)
        return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def timing_for(cron: str, every: timedelta | None, zone_name: str) -> Timing:
    """The timing of a schedule that has a cron expression or an interval (exactly one)."""
    if every is not None:
        return IntervalTiming(every)
    return CronTiming(cron, zone_name)
