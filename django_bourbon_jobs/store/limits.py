"""``Limit`` rows in the database: keeping them, the portable limited claim, circuits after outcomes.

The portable claim here serves SQLite, where one writer at a time holds the
database: inside the claim's transaction nothing else changes, so it may read the
rows, decide in Python with :mod:`django_bourbon_jobs.limits`' arithmetic and
write. PostgreSQL claims in one statement instead (:mod:`.limit_statements`).
Both read ``Limit.running`` as the triggers of migration ``0011_limits`` keep it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from django_bourbon_jobs import limits
from django_bourbon_jobs.models import Job, JobStatus, Limit
from django_bourbon_jobs.store import limit_statements

ORDER = ("-priority", "due_at", "id")


def ensure_limits(using: str, specs: Iterable[limits.LimitSpec]) -> None:
    """Create or update the rows of ``specs`` (in key order: the order claims lock them in)."""
    connection = connections[using]
    sql = limit_statements.ensure_limit_sql(connection.vendor)
    with connection.cursor() as cursor:
        for spec in sorted(specs, key=lambda spec: spec.key):
            row = spec.row_values()
            values = [row[column] for column in limit_statements.CONFIG_COLUMNS]
            cursor.execute(sql, [spec.key, *values, spec.key, *values])


def sync_queue_limits(using: str, specs: Mapping[str, limits.LimitSpec]) -> None:
    """Make the queue rows say what ``QUEUE_LIMITS`` says; a queue left out is no longer limited."""
    ensure_limits(using, specs.values())
    configured = [spec.key for spec in specs.values()]
    stale = (
        Limit.objects.db_manager(using)
        .filter(key__startswith=limits.QUEUE_PREFIX)
        .exclude(key__in=configured)
    )
    stale.exclude(concurrency=None, rate_limit=None).update(
        concurrency=None, rate_limit=None, rate_window=None
    )


def limits_exist(using: str) -> bool:
    return Limit.objects.db_manager(using).exists()


def room(row: Limit, now: datetime) -> int:
    """How many more attempts ``row``'s limits let start at ``now``."""
    concurrency = limits.UNLIMITED if row.concurrency is None else row.concurrency - row.running
    rate = limits.rate_room(row.recent_starts, row.rate_limit, row.rate_window, limits.micros(now))
    circuit = limits.circuit_room(row.breaker_threshold, row.open_until, row.trial_job_id, now)
    return max(min(concurrency, rate, circuit), 0)


def claim_limited(
    *,
    using: str,
    worker_id: str,
    queues: Collection[str],
    limit: int,
    room_left: int,
    now: datetime,
    lease_until: datetime,
) -> list[Job]:
    """Claim up to ``limit`` due jobs, limited ones (at most ``room_left``) within their limits.

    Call with the database's one writer held (SQLite; see the module doc).
    """
    with transaction.atomic(using=using):
        rows = list(Limit.objects.db_manager(using).order_by("key"))
        free = {row.key: room(row, now) for row in rows}
        ready = _due(using, queues, now)
        candidates = []
        for row in rows:
            take = min(free[row.key], room_left)
            if take > 0:
                candidates += ready.filter(limit_key=row.key).values_list(*ORDER_FIELDS)[:take]
        candidates.sort(key=_best_first)
        queue_room = {
            key.removeprefix(limits.QUEUE_PREFIX): n
            for key, n in free.items()
            if key.startswith(limits.QUEUE_PREFIX)
        }
        chosen = set(limits.within_queue_limits([(c[0], c[1]) for c in candidates], queue_room, room_left))
        plain = list(ready.filter(limit_key="").values_list(*ORDER_FIELDS)[:limit])
        picked = sorted(plain + [c for c in candidates if c[0] in chosen], key=_best_first)[:limit]
        jobs = _claim_ids(using, [c[0] for c in picked], worker_id, now, lease_until)
        _charge(rows, jobs, now)
    return jobs


ORDER_FIELDS = ("id", "queue_name", "priority", "due_at")


def _best_first(candidate: tuple[Any, ...]) -> tuple[Any, ...]:
    job_id, _, priority, due_at = candidate
    return (-priority, due_at, job_id)


def _due(using: str, queues: Collection[str], now: datetime) -> Any:
    jobs = Job.objects.db_manager(using).filter(status=JobStatus.QUEUED, due_at__lte=now).order_by(*ORDER)
    return jobs.filter(queue_name__in=list(queues)) if queues else jobs


def _claim_ids(
    using: str, ids: Sequence[Any], worker_id: str, now: datetime, lease_until: datetime
) -> list[Job]:
    if not ids:
        return []
    connection = connections[using]
    adapt = connection.ops.adapt_datetimefield_value
    pk = Job._meta.pk
    assert pk is not None
    params = [False, worker_id, adapt(lease_until), adapt(now), adapt(now)]
    params += [pk.get_db_prep_value(job_id, connection) for job_id in ids]
    sql = limit_statements.claim_ids_sql(len(ids))
    return list(Job.objects.db_manager(using).raw(sql, [*params, JobStatus.QUEUED.value]))


def _charge(rows: Sequence[Limit], jobs: Sequence[Job], now: datetime) -> None:
    """Record the claimed starts in each key's window, and a half-open circuit's trial attempt."""
    started: dict[str, list[Job]] = {}
    for job in jobs:
        if job.limit_key:
            for key in {job.limit_key, limits.queue_key(job.queue_name)}:
                started.setdefault(key, []).append(job)
    for row in rows:
        claimed = started.get(row.key)
        if not claimed:
            continue
        row.recent_starts = limits.starts_after(
            row.recent_starts, row.rate_limit, row.rate_window, limits.micros(now), len(claimed)
        )
        if row.breaker_threshold is not None and row.open_until is not None:
            row.trial_job_id = claimed[0].pk
        row.save(update_fields=["recent_starts", "trial_job_id"])


def next_opening(using: str, queues: Collection[str], now: datetime) -> datetime | None:
    """The earliest time a rate window or an open circuit lets a waiting limited job start.

    ``None`` when none is waiting on one (a concurrency limit frees when a job ends,
    and the trigger wakes the queue's workers then).
    """
    waiting = _due(using, queues, now).filter(limit_key=OuterRef("key"))
    rows = (
        Limit.objects.db_manager(using)
        .filter(Q(key__startswith=limits.QUEUE_PREFIX) | Exists(waiting))
        .filter(Q(rate_limit__isnull=False) | Q(open_until__isnull=False))
    )
    epoch = limits.micros(now)
    openings = []
    for row in rows:
        rate = limits.next_rate_opening(row.recent_starts, row.rate_limit, row.rate_window, epoch)
        if rate is not None:
            openings.append(now + timedelta(microseconds=rate - epoch))
        if row.breaker_threshold is not None and row.open_until is not None and row.trial_job_id is None:
            openings.append(max(row.open_until, now))
    return min(openings, default=None)


def lock_rows_of(using: str, jobs: QuerySet[Job]) -> None:
    """Lock, in key order, the ``Limit`` rows of the limited jobs among ``jobs``; inside a transaction.

    Whatever moves several limited jobs out of ``running`` in one transaction (a hand-back,
    a rescue) calls it first, so the triggers never take rows in another order than a
    claim does (which would be a deadlock).
    """
    pairs = jobs.exclude(limit_key="").order_by().values_list("limit_key", "queue_name").distinct()
    keys = sorted({key for limit_key, queue in pairs for key in (limit_key, limits.queue_key(queue))})
    if keys:
        rows = Limit.objects.db_manager(using).select_for_update().filter(key__in=keys).order_by("key")
        list(rows.values_list("key", flat=True))


def record_limited_outcomes(
    write: Any, using: str, worker_id: str, jobs: Sequence[Job], now: datetime
) -> tuple[int, list[limits.CircuitChange]]:
    """``write(jobs)`` the outcomes with their keys' rows locked first, in key order, then count
    them on the circuits, all in one transaction. Returns the rows written and the circuits' changes.

    Locking the rows first keeps the triggers, which update them as the jobs leave
    ``running``, from taking them in two orders in two transactions (a deadlock).
    """
    keys = sorted(
        {key for job in jobs if job.limit_key for key in (job.limit_key, limits.queue_key(job.queue_name))}
    )
    with transaction.atomic(using=using):
        rows = list(Limit.objects.db_manager(using).select_for_update().filter(key__in=keys).order_by("key"))
        held = set(
            Job.objects.db_manager(using)
            .select_for_update()
            .filter(pk__in=[job.pk for job in jobs], status=JobStatus.RUNNING, worker_id=worker_id)
            .values_list("pk", flat=True)
        )
        written = write(jobs)
        changes = _count_on_circuits(rows, [job for job in jobs if job.pk in held], now)
    return written, changes


def _count_on_circuits(
    rows: Sequence[Limit], jobs: Sequence[Job], now: datetime
) -> list[limits.CircuitChange]:
    changes = []
    for row in rows:
        if row.breaker_threshold is None or row.breaker_cooldown is None:
            continue
        circuit = _circuit(row)
        before = _circuit(row)
        for job in jobs:
            failed = attempt_failed(job)
            if job.limit_key == row.key and failed is not None:
                change = limits.after_attempt(circuit, job.pk, failed, now)
                if change is not None:
                    changes.append(change)
        if circuit != before:
            _store_circuit(row, circuit)
    return changes


def attempt_failed(job: Job) -> bool | None:
    """Whether the attempt whose outcome ``job`` carries failed; ``None`` if it says nothing either way.

    A cancel says nothing about the service a breaker guards, nor does an attempt
    given back uncharged (its worker's connection broke).
    """
    if job.status == JobStatus.SUCCEEDED:
        return False
    if job.status == JobStatus.FAILED:
        return True
    if job.status == JobStatus.QUEUED and job.errors:
        return job.errors[-1].get("charged", True) is not False
    return None


def _circuit(row: Limit) -> limits.Circuit:
    assert row.breaker_threshold is not None and row.breaker_cooldown is not None
    return limits.Circuit(
        row.key,
        limits.Breaker(row.breaker_threshold, row.breaker_cooldown),
        row.failures,
        row.open_until,
        row.opened_at,
        row.trial_job_id,
    )


def _store_circuit(row: Limit, circuit: limits.Circuit) -> None:
    """Write the circuit's state; ``running`` and the starts are the triggers' and claims' to write."""
    Limit.objects.db_manager(row._state.db).filter(pk=row.pk).update(
        failures=circuit.failures,
        open_until=circuit.open_until,
        opened_at=circuit.opened_at,
        trial_job_id=circuit.trial_job_id,
    )


def close_circuit(using: str, key: str, reason: str) -> limits.CircuitChange | None:
    """Close an open circuit by hand; ``None`` if it is not open (or not a circuit)."""
    with transaction.atomic(using=using):
        row = Limit.objects.db_manager(using).select_for_update().filter(pk=key).first()
        if row is None or row.open_until is None or row.breaker_threshold is None:
            return None
        circuit = _circuit(row)
        change = limits.close(circuit, reason)
        _store_circuit(row, circuit)
    return change
