"""Data migrations, run for real: back to the migration before, rows written then, forward again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)

APP = "bourbon_jobs"


@pytest.fixture
def migrate_to() -> Iterator[Any]:
    """Migrate the app to a named migration and get its historical models; back to the latest after."""

    def to(name: str) -> Any:
        executor = MigrationExecutor(connection)
        executor.migrate([(APP, name)])
        return MigrationExecutor(connection).loader.project_state([(APP, name)]).apps

    yield to
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes(APP))


def test_0007_moves_the_due_time_to_due_at_and_keeps_run_after_as_dispatched(migrate_to: Any) -> None:
    Job = migrate_to("0006_job_attempt_started").get_model(APP, "Job")
    now = timezone.now()
    later, retry_at = now + timedelta(hours=1), now + timedelta(seconds=30)
    fields = {"task_path": "tests.tasks.echo", "enqueued_at": now}
    at_once = Job.objects.create(run_after=now, **fields)  # "none given": the enqueue time
    scheduled = Job.objects.create(run_after=later, **fields)
    retrying = Job.objects.create(run_after=retry_at, attempts=1, **fields)

    Job = migrate_to("0007_job_due_at").get_model(APP, "Job")
    rows = {job.pk: (job.run_after, job.due_at) for job in Job.objects.all()}
    assert rows == {
        at_once.pk: (None, now),
        scheduled.pk: (later, later),
        retrying.pk: (retry_at, retry_at),
    }


def test_0007_reverses_with_the_due_time_back_in_run_after(migrate_to: Any) -> None:
    Job = migrate_to("0007_job_due_at").get_model(APP, "Job")
    now = timezone.now()
    job = Job.objects.create(task_path="tests.tasks.echo", enqueued_at=now, run_after=None, due_at=now)
    Job = migrate_to("0006_job_attempt_started").get_model(APP, "Job")
    assert Job.objects.get(pk=job.pk).run_after == now
