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
