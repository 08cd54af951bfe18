"""The SQL of flow control (docs/flow-control.md): the limited claim, and keeping ``Limit`` rows.

**The limited claim** (PostgreSQL, one statement, named parameters) is the plain
claim of :func:`.statements.claim_sql` plus the jobs that limits let start. It is
used only while ``Limit`` rows exist; the plain claim skips every limited job
(``limit_key = ''``), so without limits nothing changes. In order:

``lim``
    locks, in key order, the ``Limit`` rows the claim may need: those with due jobs
    in the worker's queues (indexes ``bourbon_job_limited`` and
    ``bourbon_job_limited_queue``), so claims lock nothing while no limited job is
    due. ``FOR UPDATE`` waits for another claimer holding them and then reads their
    newest committed version, so ``running`` (kept by triggers, migration
    ``0011_limits``) and the recent starts are never a stale snapshot's.
``cap``
    how many more attempts each key lets start now: the least of its free
    concurrency, its rate's room in the sliding window, and its circuit's (none
    while open, one trial after the cooldown).
``cand``
    per key, its first ``cap.free`` due jobs (capped by ``room``, the worker's
    idle threads), locked ``SKIP LOCKED`` through the ``bourbon_job_limited`` index.
``chosen``
    a task's jobs are also held to their queue's limit: within each queue, only
    the first ``free`` of the queue's row.
``plain``, ``picked``, ``claimed``
    the unlimited due jobs, as in the plain claim; then the best ``limit`` of
    both by priority, claimed.
``charged``
    each key's window of recent starts gains the claimed starts, and a half-open
    circuit records its trial attempt.

Claimed jobs become ``running`` in ``claimed``; the trigger adds them to
``running`` as the statement ends, while the rows are still locked.
"""

from __future__ import annotations

import functools

from django_bourbon_jobs.limits import QUEUE_PREFIX, UNLIMITED
from django_bourbon_jobs.models import Job, JobStatus, Limit
from django_bourbon_jobs.store.statements import ASYNC_COMMIT, FIELDS

JOB = Job._meta.db_table
LIMIT = Limit._meta.db_table
QUEUED = JobStatus.QUEUED.value
RUNNING = JobStatus.RUNNING.value
ORDER = "priority DESC, due_at, id"


def _queue_filter(filtered: bool, column: str = "queue_name") -> str:
    return f" AND {column} = ANY(%(queues)s)" if filtered else ""


def _lim(filtered: bool) -> str:
    due = f"SELECT 1 FROM {JOB} AS j WHERE j.status = '{QUEUED}' AND j.due_at <= %(now)s"
    queue_scope = " AND key = ANY(%(queue_keys)s)" if filtered else ""
    return (
        "SELECT key, concurrency, running, rate_limit, rate_window, recent_starts, breaker_threshold, "
        f"open_until, trial_job_id FROM {LIMIT} AS l "
        f"WHERE (key LIKE 'task:%%' AND EXISTS ({due} AND j.limit_key = l.key"
        f"{_queue_filter(filtered, 'j.queue_name')})) "
        f"OR (key LIKE 'queue:%%'{queue_scope} AND EXISTS ({due} AND j.limit_key <> '' "
        f"AND j.queue_name = substr(l.key, {len(QUEUE_PREFIX) + 1}))) "
        "ORDER BY key FOR UPDATE"
    )


_CAP = (
    "SELECT key, LEAST("
    f"CASE WHEN concurrency IS NULL THEN {UNLIMITED} ELSE concurrency - running END, "
    f"CASE WHEN rate_limit IS NULL THEN {UNLIMITED} ELSE rate_limit - ("
    "SELECT count(*) FROM jsonb_array_elements_text(recent_starts) AS s(t) "
    "WHERE s.t::bigint > %(epoch)s - round(rate_window * 1000000)::bigint) END, "
    f"CASE WHEN breaker_threshold IS NULL OR open_until IS NULL THEN {UNLIMITED} "
    "WHEN trial_job_id IS NOT NULL OR open_until > %(now)s THEN 0 ELSE 1 END"
    ") AS free FROM lim"
)


def _cand(filtered: bool) -> str:
    return (
        "SELECT c.* FROM cap CROSS JOIN LATERAL ("
        f"SELECT id, queue_name, priority, due_at FROM {JOB} "
        f"WHERE status = '{QUEUED}' AND limit_key = cap.key "
        f"AND due_at <= %(now)s{_queue_filter(filtered)} "
        f"ORDER BY {ORDER} LIMIT GREATEST(LEAST(cap.free, %(room)s), 0) FOR UPDATE SKIP LOCKED"
        ") AS c WHERE cap.free > 0"
    )


_CHOSEN = (
    "SELECT id, priority, due_at FROM ("
    "SELECT cand.*, q.free AS queue_free, row_number() OVER ("
    "PARTITION BY cand.queue_name ORDER BY cand.priority DESC, cand.due_at, cand.id) AS in_queue "
    "FROM cand LEFT JOIN cap AS q ON q.key = 'queue:' || cand.queue_name"
    ") AS ranked WHERE queue_free IS NULL OR in_queue <= queue_free "
    f"ORDER BY {ORDER} LIMIT %(room)s"
)


def _plain(filtered: bool) -> str:
    return (
        f"SELECT id, priority, due_at FROM {JOB} "
        f"WHERE status = '{QUEUED}' AND limit_key = '' AND due_at <= %(now)s{_queue_filter(filtered)} "
        f"ORDER BY {ORDER} LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
    )


_PICKED = (
    "SELECT id FROM (SELECT * FROM plain UNION ALL SELECT * FROM chosen) AS ready "
    f"ORDER BY {ORDER} LIMIT %(limit)s"
)


def _claimed() -> str:
    columns = ", ".join(str(field.column) for field in FIELDS)
    return (
        f"UPDATE {JOB} SET status = '{RUNNING}', attempts = attempts + 1, attempt_started = false, "
        "worker_id = %(worker_id)s, lease_expires_at = %(lease_until)s, "
        "started_at = COALESCE(started_at, %(now)s), last_attempted_at = %(now)s "
        f"WHERE id IN (SELECT id FROM picked){ASYNC_COMMIT} RETURNING {columns}"
    )


_STARTS_AFTER = (
    "CASE WHEN l.rate_limit IS NULL THEN '[]'::jsonb ELSE ("
    "SELECT COALESCE(jsonb_agg(t ORDER BY t), '[]'::jsonb) FROM ("
    "SELECT t FROM ("
    "SELECT s.t::bigint AS t FROM jsonb_array_elements_text(l.recent_starts) AS s(t) "
    "WHERE s.t::bigint > %(epoch)s - round(l.rate_window * 1000000)::bigint "
    "UNION ALL SELECT %(epoch)s::bigint FROM generate_series(1, n.started)"
    ") AS recent ORDER BY t DESC LIMIT l.rate_limit) AS kept) END"
)

_CHARGED = (
    f"UPDATE {LIMIT} AS l SET recent_starts = {_STARTS_AFTER}, "
    "trial_job_id = CASE WHEN l.breaker_threshold IS NOT NULL AND l.open_until IS NOT NULL "
    "THEN n.first_id ELSE l.trial_job_id END "
    "FROM (SELECT k.key, count(DISTINCT claimed.id) AS started, min(claimed.id::text)::uuid AS first_id "
    "FROM claimed CROSS JOIN LATERAL "
    "(VALUES (claimed.limit_key), ('queue:' || claimed.queue_name)) AS k(key) "
    "WHERE claimed.limit_key <> '' GROUP BY k.key) AS n "
    "WHERE l.key = n.key"
)


@functools.cache
def limited_claim_sql(filtered: bool) -> str:
    """Parameters (named): now, epoch (``now`` as :func:`~django_bourbon_jobs.limits.micros`), limit,
    room, worker_id, lease_until, and with ``filtered`` queues (names) and queue_keys (``queue:<name>``)."""
    columns = ", ".join(str(field.column) for field in FIELDS)
    parts = {
        "lim": _lim(filtered),
        "cap": _CAP,
        "cand": _cand(filtered),
        "chosen": _CHOSEN,
        "plain": _plain(filtered),
        "picked": _PICKED,
        "claimed": _claimed(),
        "charged": _CHARGED,
    }
    ctes = ", ".join(
        f"{name} AS {'MATERIALIZED ' if name == 'lim' else ''}({sql})" for name, sql in parts.items()
    )
    return f"WITH {ctes} SELECT {columns} FROM claimed"


CONFIG_COLUMNS = ("concurrency", "rate_limit", "rate_window", "breaker_threshold", "breaker_cooldown")
"""The ``Limit`` columns a :class:`~django_bourbon_jobs.limits.LimitSpec` sets, in this order."""
_PG_TYPES = {
    "concurrency": "integer",
    "rate_limit": "integer",
    "rate_window": "float8",
    "breaker_threshold": "integer",
    "breaker_cooldown": "float8",
}


@functools.cache
def ensure_limit_sql(vendor: str) -> str:
    """Insert or update one ``Limit`` row's settings, writing nothing when they are already so.

    Parameters: the key, the :data:`CONFIG_COLUMNS` values, the key again, the values again.
    ``INSERT ... SELECT ... WHERE NOT EXISTS``: an unchanged row is neither written nor
    locked (an ``ON CONFLICT DO UPDATE`` would lock it even when it changes nothing, and
    limited enqueues would queue behind claims). Removing the breaker closes its circuit.
    """
    postgres = vendor == "postgresql"
    typed = [f"%s::{_PG_TYPES[c]}" if postgres else "%s" for c in CONFIG_COLUMNS]
    same = "IS NOT DISTINCT FROM" if postgres else "IS"
    empty = "'[]'::jsonb" if postgres else "'[]'"
    unchanged = " AND ".join(
        f"{column} {same} {value}" for column, value in zip(CONFIG_COLUMNS, typed, strict=True)
    )
    updates = ", ".join(f"{column} = excluded.{column}" for column in CONFIG_COLUMNS)
    closed = f"CASE WHEN excluded.breaker_threshold IS NULL THEN NULL ELSE {LIMIT}.{{0}} END"
    return (
        f"INSERT INTO {LIMIT} (key, {', '.join(CONFIG_COLUMNS)}, running, recent_starts, failures) "
        f"SELECT %s, {', '.join(typed)}, 0, {empty}, 0 "
        f"WHERE NOT EXISTS (SELECT 1 FROM {LIMIT} WHERE key = %s AND {unchanged}) "
        f"ON CONFLICT (key) DO UPDATE SET {updates}, open_until = {closed.format('open_until')}, "
        f"trial_job_id = {closed.format('trial_job_id')}"
    )


def claim_ids_sql(count: int) -> str:
    """The portable limited claim's UPDATE of the jobs it picked. Parameters: worker id, lease end,
    now (started_at), now (last attempted), the ``count`` ids, queued."""
    columns = ", ".join(str(field.column) for field in FIELDS)
    return (
        f"UPDATE {JOB} SET status = '{RUNNING}', attempts = attempts + 1, attempt_started = %s, "
        "worker_id = %s, lease_expires_at = %s, started_at = COALESCE(started_at, %s), "
        "last_attempted_at = %s "
        f"WHERE id IN ({', '.join(['%s'] * count)}) AND status = %s RETURNING {columns}"
    )
