"""Rate limits (docs/flow-control.md): at most N starts in any window, a sliding one, on both stores.

The claim takes ``now`` as a parameter, so the windows are driven by the test's clock.
"""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from django_bourbon_jobs.limits import micros, next_rate_opening, rate_room, starts_after
from django_bourbon_jobs.models import Job, JobStatus, Limit
from django_bourbon_jobs.store import for_connection
from tests import tasks
from tests.conftest import drain
from tests.test_limits import claim

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "task:tests.tasks.three_per_second"


def most_in_window(times, window):
    """The most of ``times`` inside one window ``[t, t + window)``."""
    times = sorted(times)
    most = first = 0
    for last, end in enumerate(times):
        while times[first] <= end - window:
            first += 1
        most = max(most, last - first + 1)
    return most


def at(seconds, t0):
    return t0 + timedelta(seconds=seconds)


def test_a_rate_lets_n_start_per_window_and_the_rest_wait_queued_and_uncharged():
    ids = [tasks.three_per_second.enqueue(n).id for n in range(7)]
    t0 = timezone.now()
    assert len(claim(now=t0)) == 3
    assert claim(now=at(0.5, t0)) == []
    waiting = Job.objects.filter(pk__in=ids, status=JobStatus.QUEUED)
    assert waiting.count() == 4 and set(waiting.values_list("attempts", flat=True)) == {0}
    assert len(claim(now=at(1.0, t0))) == 3
    assert len(claim(now=at(2.0, t0))) == 1


def test_the_window_slides_rather_than_resetting_on_the_clock():
    for n in range(10):
        tasks.three_per_second.enqueue(n)
    t0 = timezone.now()
    assert len(claim(now=t0, room=2)) == 2
    assert len(claim(now=at(0.6, t0), room=5)) == 1
    # A fixed one-second bucket would allow 3 more here; the window (0.3, 1.3] holds the 0.6 start.
    assert len(claim(now=at(1.3, t0), room=5)) == 2
    assert claim(now=at(1.5, t0), room=5) == []
    assert len(claim(now=at(1.6, t0), room=5)) == 1
    starts = Limit.objects.get(pk=KEY).recent_starts
    assert len(starts) == 3 and starts == sorted(starts)


def test_the_store_says_when_a_full_window_opens():
    for n in range(4):
        tasks.three_per_second.enqueue(n)
    t0 = timezone.now()
    claim(now=t0)
    store = for_connection("default")
    opening = store.next_limit_opening("default", frozenset(), at(0.25, t0))
    assert opening is not None and abs((opening - t0).total_seconds() - 1.0) < 0.001
    claim(now=at(1.0, t0))
    assert store.next_limit_opening("default", frozenset(), at(1.1, t0)) is None, "nothing waits any more"


def test_a_queue_rate_limit_holds_every_task_of_the_queue():
    with override_settings(BOURBON_JOBS={"QUEUE_LIMITS": {"emails": {"rate_limit": "2/m"}}}):
        for n in range(3):
            tasks.send_welcome_email.enqueue({"email": f"{n}@x"})
        tasks.one_email_at_a_time.enqueue(1)
        t0 = timezone.now()
        assert len(claim(now=t0)) == 2
        assert claim(now=at(59, t0)) == []
        assert len(claim(now=at(60, t0))) == 2


def test_a_worker_sleeps_until_the_window_opens_and_keeps_the_rate(tmp_path):
    path = tmp_path / "starts"
    for n in range(12):
        tasks.five_per_second.enqueue({"path": str(path), "n": n})
    started = timezone.now()
    worker = drain(threads=4, poll_interval=5.0)
    elapsed = (timezone.now() - started).total_seconds()
    rows = [tuple(map(float, line.split())) for line in path.read_text().splitlines()]
    assert len(rows) == 12 and Job.objects.succeeded().count() == 12
    assert most_in_window([claimed for claimed, _ in rows], 1.0) <= 5
    assert 2.0 <= elapsed < 4.5, "12 starts at 5/s take two full windows, not the 5 s poll interval"
    assert worker.jobs_done == 12


S = 1_000_000
"""A second, in the microseconds the window keeps."""


@pytest.mark.parametrize(
    ("starts", "room"),
    [([], 3), ([9.5], 2), ([8.9, 9.5, 9.9], 1), ([9.1, 9.5, 9.9], 0), ([9.0], 3), ([9.000001, 9.5, 9.9], 0)],
)
def test_rate_room_at_ten_seconds(starts, room):
    assert rate_room([round(t * S) for t in starts], 3, 1.0, 10 * S) == room


def test_starts_after_keeps_the_last_n_in_order():
    assert starts_after([8 * S, 95 * S // 10], 3, 1.0, 10 * S, 2) == [95 * S // 10, 10 * S, 10 * S]
    assert next_rate_opening([95 * S // 10, 10 * S, 10 * S], 3, 1.0, 102 * S // 10) == 105 * S // 10
    assert next_rate_opening([95 * S // 10, 10 * S], 3, 1.0, 102 * S // 10) is None


def test_micros_is_exact():
    t0 = timezone.now()
    assert micros(t0 + timedelta(seconds=1)) - micros(t0) == S


def test_most_in_window():
    assert most_in_window([0.0, 0.5, 0.99, 1.0, 1.6], 1.0) == 3
    assert most_in_window([0.0, 0.5, 0.99, 1.0, 1.2], 1.0) == 4
