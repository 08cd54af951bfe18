"""Wake-up sources close the gap before they listened: connecting pokes the worker once."""

import os

import pytest

from django_bourbon_jobs.worker.wakeup import PostgresListener, Wakeup
from tests.conftest import wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(os.environ.get("BOURBON_TEST_DB") != "postgres", reason="LISTEN is PostgreSQL's"),
]


def test_a_new_listener_pokes_the_worker_once_it_listens():
    wakeup = Wakeup([lambda w: PostgresListener(w, frozenset(), "default")])
    assert wakeup.wait(0) is False
    wakeup.start()
    try:
        listener = wakeup.sources[0]
        wait_until(listener.listening.is_set, timeout=10, message="LISTEN established")
        assert wakeup.wait(5) is True, "jobs enqueued before LISTEN would otherwise wait for a poll"
    finally:
        wakeup.stop()


def _listening_connection():
    import psycopg
    from django.db import connection

    params = connection.get_connection_params()
    for key in ("cursor_factory", "context", "server_side_binding"):
        params.pop(key, None)
    conn = psycopg.connect(**params, autocommit=True)
    conn.execute("LISTEN bourbon_jobs")
    return conn


def test_an_enqueued_job_reads_back_field_for_field_and_notifies_its_queue(django_user_model):
    from django.forms.models import model_to_dict

    from django_bourbon_jobs import dispatch_async
    from django_bourbon_jobs.models import Job
    from tests import tasks

    user = django_user_model.objects.create(username="ann")
    listener = _listening_connection()
    try:
        payload = {"text": "naïve ✓ 'quoted' \\ back", "nested": [1, 2.5, None, True, {"k": []}]}
        result = dispatch_async(tasks.send_welcome_email, payload, dispatched_by=user, idempotency_key="k-1")
        heard = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    finally:
        listener.close()
    assert heard == ["emails"], "the notification names the job's queue"
    stored = model_to_dict(Job.objects.get(pk=result.id))
    assert stored["args"] == [payload] and stored["kwargs"] == {}
    assert (stored["queue_name"], stored["priority"], stored["max_attempts"]) == ("emails", 10, 5)
    assert (stored["dispatched_by"], stored["idempotency_key"]) == (user.pk, "k-1")
    assert stored["status"] == "queued" and stored["errors"] == [] and stored["return_value"] is None
    assert Job.objects.get(pk=result.id).enqueued_at == result.enqueued_at


def test_the_enqueue_statement_goes_through_djangos_execute_wrappers():
    from django.db import connection

    from tests import tasks

    seen: list[str] = []

    def spy(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        tasks.echo.enqueue(1)
    assert [sql for sql in seen if "INSERT INTO" in sql and "pg_notify" in sql], seen
