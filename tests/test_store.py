"""The store contract: every store writes the same rows (issue 13's store/ layer, insert side).

Runs against the store Django's connection gets (PostgreSQL's on PostgreSQL, the
portable one on SQLite) and against the portable store on every database.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from django_bourbon_jobs import bulk, store
from django_bourbon_jobs.models import Job
from django_bourbon_jobs.store.portable import PortableStore
from tests.conftest import is_postgres

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["for_connection", "portable"])
def storage(request: pytest.FixtureRequest) -> PortableStore:
    return store.for_connection("default") if request.param == "for_connection" else PortableStore()


def new_job(**fields: object) -> Job:
    now = timezone.now()
    values: dict[str, object] = {"task_path": "tests.tasks.echo", "run_after": now, "enqueued_at": now}
    return Job(**{**values, "args": [1], "kwargs": {"k": "v"}, **fields})


class TestStoreContract:
    def test_insert_writes_the_row_as_given(self, storage: PortableStore) -> None:
        for notify in (True, False):
            job = new_job(queue_name=f"q{notify}", priority=7)
            storage.insert(job, "default", notify=notify)
            stored = Job.objects.get(pk=job.pk)
            assert (stored.queue_name, stored.priority, stored.args, stored.kwargs) == (
                f"q{notify}",
                7,
                [1],
                {"k": "v"},
            )
            assert not job._state.adding

    def test_insert_many_writes_every_row_with_its_own_arguments(self, storage: PortableStore) -> None:
        later = timezone.now() + timedelta(hours=1)
        jobs = bulk.clone_jobs(new_job(run_after=later), [([n], {"n": n}) for n in range(1500)])
        with transaction.atomic():
            storage.insert_many(jobs, "default")
            storage.notify("default", "default")
        stored = {str(job.pk): (job.args, job.kwargs, job.run_after) for job in Job.objects.all()}
        assert len(stored) == 1500
        assert stored[str(jobs[42].pk)] == ([42], {"n": 42}, later)
        storage.insert_many([], "default")

    def test_the_idempotency_lock_is_taken_inside_a_transaction(self, storage: PortableStore) -> None:
        with transaction.atomic():
            storage.lock_idempotency_key("default", "bourbon:1:key")
            storage.insert(new_job(), "default", notify=False)
        assert Job.objects.count() == 1


@pytest.mark.skipif(not is_postgres(), reason="PostgreSQL's NOTIFY")
def test_postgres_insert_notifies_the_queue_on_commit_only() -> None:
    import psycopg

    params = connection.get_connection_params()
    for key in ("cursor_factory", "context", "server_side_binding"):
        params.pop(key, None)
    with psycopg.connect(**params, autocommit=True) as listener:
        listener.execute("LISTEN bourbon_jobs")
        with transaction.atomic():
            store.for_connection("default").insert(new_job(queue_name="emails"), "default", notify=True)
            assert [n.payload for n in listener.notifies(timeout=0.2)] == [], "held until commit"
        assert [n.payload for n in listener.notifies(timeout=2, stop_after=1)] == ["emails"]
