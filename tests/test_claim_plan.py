"""The claim stays an index walk however much history the table holds (PostgreSQL's EXPLAIN)."""

import os

import pytest
from django.db import connection
from django.utils import timezone

from django_bourbon_jobs.worker.claiming import claim_sql

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(os.environ.get("BOURBON_TEST_DB") != "postgres", reason="PostgreSQL's planner"),
]

FILL = """
INSERT INTO bourbon_jobs_job
    (id, task_path, queue_name, priority, args, kwargs, status, attempts, max_attempts,
     run_after, enqueued_at, finished_at, worker_id, errors, idempotency_key, callback_url)
SELECT gen_random_uuid(), 'tests.tasks.echo', 'default', 0, '[]', '{}', %s, 1, 3,
       now() - interval '1 day', now() - interval '1 day', %s, '', '[]', '', ''
FROM generate_series(1, %s)
"""


def explain_claim(queues=()):
    """EXPLAIN (without running) the exact statement a worker sends."""
    now = timezone.now()
    params = ["running", "w", now, now, now, "queued", now, *queues, 32]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE bourbon_jobs_job")
        cursor.execute("EXPLAIN " + claim_sql(True, len(queues)), params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.parametrize("queues", [(), ("default", "emails")])
def test_claim_uses_the_partial_index_not_a_table_scan(queues):
    with connection.cursor() as cursor:
        cursor.execute(FILL, ["succeeded", "2026-01-01T00:00:00Z", 200_000])
        cursor.execute(FILL, ["queued", None, 20_000])
    plan = explain_claim(queues)
    assert "bourbon_job_claim" in plan, plan
    assert "Seq Scan" not in plan, plan
