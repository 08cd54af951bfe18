"""The claim stays an index walk however much history the table holds (PostgreSQL's EXPLAIN)."""

import os

import pytest
from django.db import connection
from django.utils import timezone

from django_bourbon_jobs.store.postgres import _walking_connections, prefer_index_walk
from django_bourbon_jobs.store.statements import claim_sql

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(os.environ.get("BOURBON_TEST_DB") != "postgres", reason="PostgreSQL's planner"),
]

FILL = """
INSERT INTO bourbon_jobs_job
    (id, task_path, queue_name, priority, args, kwargs, status, attempts, max_attempts,
     due_at, enqueued_at, finished_at, worker_id, errors, idempotency_key, callback_url)
SELECT gen_random_uuid(), 'tests.tasks.echo', 'default', 0, '[]', '{}', %s, 1, 3,
       now() - interval '1 day', now() - interval '1 day', %s, '', '[]', '', ''
FROM generate_series(1, %s)
"""


def explain_claim(queues=()):
    """EXPLAIN (without running) the exact statement a worker sends."""
    now = timezone.now()
    params = ["running", False, "w", now, now, now, "queued", now, *queues, 32]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE bourbon_jobs_job")
        cursor.execute("EXPLAIN " + claim_sql(True, len(queues), async_commit=True), params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_claim_uses_the_partial_index_not_a_table_scan():
    """For every queue and for named queues, on one fill of 220,000 rows (each fill costs seconds)."""
    with connection.cursor() as cursor:
        cursor.execute(FILL, ["succeeded", "2026-01-01T00:00:00Z", 200_000])
        cursor.execute(FILL, ["queued", None, 20_000])
    for queues in [(), ("default", "emails")]:
        plan = explain_claim(queues)
        assert "bourbon_job_claim" in plan, (queues, plan)
        assert "Seq Scan" not in plan, (queues, plan)


# What ANALYZE knows of limit_key stays: every job is unlimited, as in a system without limits.
# Without it the planner's default guess for ``limit_key = ''`` alone favours the index walk,
# and the trap below would not show.
FORGET_STATISTICS_BUT_LIMIT_KEY = """
DELETE FROM pg_statistic WHERE starelid = 'bourbon_jobs_job'::regclass AND staattnum <> (
    SELECT attnum FROM pg_attribute WHERE attrelid = 'bourbon_jobs_job'::regclass AND attname = 'limit_key');
UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE oid = 'bourbon_jobs_job'::regclass
    OR oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'bourbon_jobs_job'::regclass)
"""


def test_claim_walks_the_index_in_order_even_before_statistics_catch_up():
    """A table never analyzed (a fresh install, autovacuum off or behind) after a bulk dispatch.

    100,000 rows, and every statistic forgotten but ``limit_key``'s (all empty: no limits): with
    the unique-job constraints and the claim index's ``limit_key`` predicate, PostgreSQL's guess
    for fewer rows no longer falls into the trap, so the test would not show it."""
    with connection.cursor() as cursor:
        cursor.execute(FILL, ["queued", None, 100_000])
        cursor.execute("ANALYZE bourbon_jobs_job")
        cursor.execute(FORGET_STATISTICS_BUT_LIMIT_KEY)
        cursor.execute("RESET enable_bitmapscan")
    now = timezone.now()
    params = ["running", False, "w", now, now, now, "queued", now, 32]

    def plan():
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + claim_sql(True, 0, async_commit=True), params)
            return "\n".join(row[0] for row in cursor.fetchall())

    untuned = plan()
    assert "Bitmap Heap Scan" in untuned, untuned  # the trap this guards against is real

    _walking_connections.discard(connection.connection)
    prefer_index_walk(connection)
    tuned = plan()
    assert "Index Scan using bourbon_job_claim" in tuned, tuned
    assert "Bitmap" not in tuned and "Seq Scan" not in tuned, tuned
    assert "Sort Key: bourbon_jobs_job_1.priority" not in tuned, tuned


def test_a_claim_commits_without_waiting_for_the_wal_flush_and_only_its_own_transaction():
    from django.db import transaction

    from django_bourbon_jobs.store import for_connection

    with connection.cursor() as cursor:
        cursor.execute(FILL, ["queued", None, 3])
    now = timezone.now()

    def synchronous_commit():
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return cursor.fetchone()[0]

    with transaction.atomic():
        claimed = for_connection("default").claim(
            using="default", worker_id="w", queues=(), limit=2, now=now, lease_until=now
        )
        assert len(claimed) == 2
        assert synchronous_commit() == "off"
    assert synchronous_commit() == "on"
    for_connection("default").claim(
        using="default", worker_id="w", queues=(), limit=1, now=now, lease_until=now
    )
    assert synchronous_commit() == "on"
