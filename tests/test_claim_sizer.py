"""The claim sizer: one job per thread while the queue is short, doubling to a batch under a backlog."""

from django_bourbon_jobs.worker.claim_sizer import ClaimSizer


def test_full_claims_double_up_to_the_batch_and_a_short_one_resets():
    sizer = ClaimSizer(threads=2, batch_size=32)
    asked = []
    for got_all in (True, True, True, True, True, False):
        asked.append(sizer.size)
        sizer.claimed(sizer.size if got_all else 0, sizer.size)
    assert asked == [2, 4, 8, 16, 32, 32]
    assert sizer.size == 2 and sizer.refill_below == 2


def test_under_a_backlog_the_next_claim_comes_while_half_the_batch_waits():
    sizer = ClaimSizer(threads=4, batch_size=32)
    sizer.claimed(4, 4)
    sizer.claimed(8, 8)
    assert sizer.size == 16 and sizer.refill_below == 8
    assert sizer.room(7) and not sizer.room(8)
