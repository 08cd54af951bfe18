"""When schedules run: cron in a time zone across DST changes, and fixed intervals.

Property-based: :class:`CronTiming` is checked against croniter's own answers (the library it
wraps) and against an oracle written here from cron's rules alone, which walks the local
calendar and maps each wall-clock time to its instant(s).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_bourbon_jobs.periodic.timing import CronTiming, IntervalTiming, cron_problem

ZONES = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "America/Santiago",
    "Australia/Sydney",
    "Australia/Lord_Howe",  # half-hour DST
    "America/St_Johns",  # -03:30 / -02:30
    "Pacific/Chatham",  # +12:45 / +13:45, changes at 02:45
    "Asia/Kolkata",  # no DST
]
YEARS = range(2024, 2031)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- an oracle from cron's rules --------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    text: str
    values: frozenset[int]
    star: bool


def field(low: int, high: int, steps: bool) -> st.SearchStrategy[Field]:
    """One cron field and the values it matches."""
    value = st.integers(low, high)
    star = st.just(Field("*", frozenset(range(low, high + 1)), True))
    single = value.map(lambda v: Field(str(v), frozenset([v]), False))
    span = (
        st.tuples(value, value)
        .filter(lambda ab: ab[0] != ab[1])
        .map(sorted)
        .map(lambda ab: Field(f"{ab[0]}-{ab[1]}", frozenset(range(ab[0], ab[1] + 1)), False))
    )
    listed = st.sets(value, min_size=2, max_size=4).map(
        lambda vs: Field(",".join(map(str, sorted(vs))), frozenset(vs), False)
    )
    options = [star, single, span, listed]
    if steps:
        step = st.integers(2, max(2, (high - low) // 2))
        options.append(step.map(lambda n: Field(f"*/{n}", frozenset(range(low, high + 1, n)), False)))
    return st.one_of(*options)


@dataclass(frozen=True)
class Expression:
    minute: Field
    hour: Field
    dom: Field
    month: Field
    dow: Field

    @property
    def text(self) -> str:
        return " ".join(f.text for f in (self.minute, self.hour, self.dom, self.month, self.dow))

    def matches_day(self, day: date) -> bool:
        if day.month not in self.month.values:
            return False
        by_dom = self.dom.star or day.day in self.dom.values
        by_dow = self.dow.star or day.isoweekday() % 7 in self.dow.values
        if not self.dom.star and not self.dow.star:
            return by_dom or by_dow  # cron: either day field may match when both are restricted
        return by_dom and by_dow


expressions = st.builds(
    Expression,
    minute=field(0, 59, steps=True),
    hour=field(0, 23, steps=True),
    dom=field(1, 28, steps=False),  # days that every month has, so no expression is impossible
    month=field(1, 12, steps=False),
    dow=field(0, 6, steps=False),
)


def wall_instants(wall: datetime, zone: ZoneInfo, every_hour: bool) -> list[datetime]:
    """The instants a matching wall-clock time runs at, by cron's rules across DST."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    exists = first.astimezone(zone).replace(tzinfo=None) == wall
    if not exists:  # in a gap: a named hour runs once, at the jump
        return [] if every_hour else [jump_within(second, first, zone)]
    if first != second and every_hour:  # happens twice: every-hour expressions follow elapsed time
        return [first, second]
    return [first]


def jump_within(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The instant the offset changes, between two instants on either side of it."""
    offset = before.astimezone(zone).utcoffset()
    while after - before > timedelta(seconds=1):
        middle = before + (after - before) / 2
        if middle.astimezone(zone).utcoffset() == offset:
            before = middle
        else:
            after = middle
    return after.replace(microsecond=0)


def oracle_next(expression: Expression, zone: ZoneInfo, moment: datetime) -> datetime:
    every_hour = len(expression.hour.values) == 24
    day = moment.astimezone(zone).date() - timedelta(days=1)
    found: list[datetime] = []
    while not found or day <= found[0].astimezone(zone).date() + timedelta(days=1):
        if expression.matches_day(day):
            for hour in sorted(expression.hour.values):
                for minute in sorted(expression.minute.values):
                    wall = datetime(day.year, day.month, day.day, hour, minute)
                    found += [t for t in wall_instants(wall, zone, every_hour) if t > moment]
            found.sort()
        day += timedelta(days=1)
    return found[0]


# --- moments near DST changes -----------------------------------------------------------------


@functools.cache
def transitions() -> list[datetime]:
    """Every UTC-offset change of the test zones in the test years."""
    changes = []
    for name in ZONES:
        zone = ZoneInfo(name)
        moment = datetime(YEARS[0], 1, 1, tzinfo=UTC)
        while moment.year < YEARS[-1] + 1:
            later = moment + timedelta(hours=6)
            if moment.astimezone(zone).utcoffset() != later.astimezone(zone).utcoffset():
                changes.append(jump_within(moment, later, zone))
            moment = later
    return changes


def near_a_change() -> st.SearchStrategy[datetime]:
    shift = st.integers(-2 * 86400, 2 * 86400).map(lambda s: timedelta(seconds=s))
    return st.builds(lambda t, d: t + d, st.sampled_from(transitions()), shift)


anywhere = st.datetimes(
    min_value=datetime(YEARS[0], 1, 1), max_value=datetime(YEARS[-1], 12, 31), timezones=st.just(UTC)
)
moments = st.one_of(near_a_change(), anywhere)


# --- properties -------------------------------------------------------------------------------


@PROPERTY
@given(expressions, st.sampled_from(ZONES), moments)
def test_cron_next_run_follows_the_rules_of_cron_across_dst(expression, zone_name, moment):
    timing = CronTiming(expression.text, zone_name)
    assert timing.next_after(moment) == oracle_next(expression, ZoneInfo(zone_name), moment)


@PROPERTY
@given(expressions, st.sampled_from(ZONES), moments)
def test_cron_runs_are_croniters_less_the_second_pass_of_a_named_hour(expression, zone_name, moment):
    timing, zone = CronTiming(expression.text, zone_name), ZoneInfo(zone_name)
    ours = [timing.next_after(moment)]
    for _ in range(5):
        ours.append(timing.next_after(ours[-1]))
    theirs, answers = [], croniter(expression.text, moment.astimezone(zone))
    while (answer := answers.get_next(datetime)) <= ours[-1]:
        theirs.append(answer)
    assert set(ours) <= {t.astimezone(UTC) for t in theirs}
    for local in (t for t in theirs if t.astimezone(UTC) not in ours):
        assert not timing.every_hour, "an every-hour expression runs in both passes of a repeated hour"
        assert local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()
        first_pass = local.replace(fold=0).astimezone(UTC)
        assert first_pass in ours or first_pass <= moment, "its first pass ran, or was before the moment"


@PROPERTY
@given(expressions, st.sampled_from(ZONES), moments)
def test_latest_run_at_or_before_is_the_one_next_after_leads_to(expression, zone_name, moment):
    timing = CronTiming(expression.text, zone_name)
    latest = timing.latest_at_or_before(moment)
    assert latest is not None and latest <= moment
    assert timing.next_after(latest) > moment, "no run between it and the moment"
    assert timing.next_after(latest - timedelta(microseconds=1)) == latest, "it is a scheduled time"


@PROPERTY
@given(st.integers(1, 10 * 86400), st.integers(0, 999_999), anywhere)
def test_interval_runs_on_multiples_of_the_period_since_the_epoch(seconds, micros, moment):
    period = timedelta(seconds=seconds, microseconds=micros)
    timing = IntervalTiming(period)
    following, latest = timing.next_after(moment), timing.latest_at_or_before(moment)
    assert moment < following <= moment + period
    assert latest <= moment < latest + period
    assert (following - datetime(1970, 1, 1, tzinfo=UTC)) % period == timedelta(0)
    assert following - latest in (period, 2 * period) and (following == latest + period or latest == moment)


# --- DST by example ---------------------------------------------------------------------------


def runs_on(timing: CronTiming, day: date) -> list[datetime]:
    """The runs whose local date is ``day``, in local time."""
    start = datetime(day.year, day.month, day.day, tzinfo=timing.zone) - timedelta(seconds=1)
    runs, moment = [], start.astimezone(UTC)
    while (moment := timing.next_after(moment)).astimezone(timing.zone).date() == day:
        runs.append(moment.astimezone(timing.zone))
    return runs


@pytest.mark.parametrize(
    "zone, spring, autumn",
    [
        ("Europe/Paris", date(2026, 3, 29), date(2026, 10, 25)),
        ("America/New_York", date(2026, 3, 8), date(2026, 11, 1)),
    ],
)
def test_a_daily_0230_runs_once_on_both_change_days(zone, spring, autumn):
    timing = CronTiming("30 2 * * *", zone)
    [spring_run] = runs_on(timing, spring)
    assert (spring_run.hour, spring_run.minute) == (3, 0), "02:30 does not exist: it runs at the jump"
    [autumn_run] = runs_on(timing, autumn)
    assert (autumn_run.hour, autumn_run.minute, autumn_run.fold) == (2, 30, 0), "once, the first time"
    assert [(r.hour, r.minute) for r in runs_on(timing, autumn + timedelta(days=1))] == [(2, 30)]


def test_an_hourly_schedule_follows_elapsed_time_across_dst():
    timing = CronTiming("@hourly", "Europe/Paris")
    spring, autumn = runs_on(timing, date(2026, 3, 29)), runs_on(timing, date(2026, 10, 25))
    assert len(spring) == 23 and 2 not in [r.hour for r in spring]
    assert len(autumn) == 25 and [r.hour for r in autumn].count(2) == 2
    for runs in (spring, autumn):
        gaps = {b.astimezone(UTC) - a.astimezone(UTC) for a, b in itertools.pairwise(runs)}
        assert gaps == {timedelta(hours=1)}


@pytest.mark.parametrize(
    "expression, problem",
    [
        ("0 3 * * *", None),
        ("@daily", None),
        ("@WEEKLY", None),
        ("*/5 9-17 * * 1-5", None),
        ("0 3 * *", "five fields"),
        ("0 3 * * * *", "five fields"),
        ("61 3 * * *", "not a valid cron expression"),
        ("0 3 * * mon-", "not a valid cron expression"),
        ("5-5 * * * *", "ends are equal"),  # croniter would run it every minute
        ("0 3 * jan-JAN *", "ends are equal"),
        ("0 3 1,10-10/2 * *", "ends are equal"),
        ("0 3 * * 1-5", None),
        ("@sometimes", "not a known alias"),
        ("", "five-field cron expression"),
        (30, "five-field cron expression"),
    ],
)
def test_cron_expressions_are_checked(expression, problem):
    found = cron_problem(expression)
    assert (found is None) if problem is None else (problem in found)
