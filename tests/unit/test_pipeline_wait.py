"""How long a return taken now would wait in the services' queues (pure,
services/decisions/pipeline_wait.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.decisions.pipeline_wait import MAX_VISITS, MIN_RATE, Partition, PipelineWait


def _steady(wait: PipelineWait, seconds: int, returns_per_s: int, visits: int, handled_per_s: int):
    """`seconds` of samples: returns.events grows by returns_per_s, the group's inputs by
    visits × that, and the group handles handled_per_s of them."""
    for second in range(seconds + 1):
        written = second * returns_per_s * visits
        handled = min(written, second * handled_per_s)
        wait.add(
            second * 1_000,
            second * returns_per_s,
            {"coordinator": {"returns.events:0": Partition(written, handled)}},
        )


def test_a_group_that_keeps_up_adds_no_wait() -> None:
    wait = PipelineWait()
    _steady(wait, 30, returns_per_s=100, visits=6, handled_per_s=10_000)
    assert wait.seconds() == 0.0


def test_the_wait_is_visits_times_the_queue_over_the_rate_it_is_handled_at() -> None:
    wait = PipelineWait(rate_window_ms=10_000, visits_window_ms=60_000)
    # 200 returns/s offered, 6 records each: 1,200/s written, 900/s handled
    _steady(wait, 60, returns_per_s=200, visits=6, handled_per_s=900)
    queued = 59 * 1_200 - 60 * 900  # written as of the signal's lag (a second), not handled
    assert wait.by_group()["coordinator"] == pytest.approx(6 * queued / 900)


def test_records_written_since_the_handled_signal_was_committed_are_not_queued() -> None:
    """The handled positions are committed once a second: a group that keeps up signals
    what was written a second before. That is no queue (counted, 1,200 records here made
    6 s of wait at 200 returns/s)."""
    wait = PipelineWait()
    for second in range(31):
        written, handled = second * 1_200, max(0, second - 1) * 1_200
        wait.add(
            second * 1_000, second * 200, {"coordinator": {"e:0": Partition(written, handled)}}
        )
    assert wait.seconds() == 0.0


def test_a_burst_shows_once_it_is_older_than_the_signal() -> None:
    wait = PipelineWait()
    _steady(wait, 60, returns_per_s=100, visits=1, handled_per_s=100)
    assert wait.seconds() == 0.0
    for second, written, handled in ((61, 6_900, 6_100), (62, 7_000, 6_200)):
        wait.add(
            second * 1_000,
            written,
            {"coordinator": {"returns.events:0": Partition(written, handled)}},
        )
    assert wait.seconds() == pytest.approx((6_900 - 6_200) / 100, rel=0.1)


def test_an_idle_group_is_not_taken_to_be_slow() -> None:
    wait = PipelineWait()
    for second in range(20):  # a trickle: 3 records waiting, 0.5 a second handled
        wait.add(
            second * 1_000,
            second // 2,
            {"pickup": {"p:0": Partition(second // 2 + 3, second // 2)}},
        )
    assert wait.seconds() == pytest.approx(3 / MIN_RATE)


def test_a_partition_that_appears_with_its_history_is_not_a_burst() -> None:
    wait = PipelineWait()
    _steady(wait, 60, returns_per_s=100, visits=1, handled_per_s=100)
    wait.add(
        61_000,
        6_100,
        {
            "coordinator": {
                "returns.events:0": Partition(6_100, 6_100),
                "saga.archive:3": Partition(500_000, 499_990),  # first signalled now
            }
        },
    )
    assert wait.by_group()["coordinator"] == pytest.approx(10 / 100, rel=0.05)


def test_visits_are_one_over_too_few_returns_and_capped() -> None:
    wait = PipelineWait()
    for second in range(10):  # 5 returns in all, a burst of other records
        wait.add(
            second * 1_000,
            second // 2,
            {"refund": {"r:0": Partition(second * 10_000, second * 10_000 - 20_000)}},
        )
    assert wait.by_group()["refund"] == pytest.approx(10_000 / 10_000)  # 1 visit, at its rate
    busy = PipelineWait()
    for second in range(10):
        busy.add(
            second * 1_000,
            second * 200,
            {"refund": {"r:0": Partition(second * 100_000, second * 100_000 - 200_000)}},
        )
    assert busy.by_group()["refund"] == pytest.approx(MAX_VISITS * 100_000 / 100_000)


def test_samples_older_than_both_windows_are_dropped() -> None:
    wait = PipelineWait(rate_window_ms=10_000, visits_window_ms=60_000)
    _steady(wait, 600, returns_per_s=10, visits=1, handled_per_s=10)
    assert wait.samples[0].at_ms >= 600_000 - 61_000
    assert len(wait.samples) <= 62


@given(
    st.lists(
        st.tuples(st.integers(0, 5_000), st.integers(0, 5_000), st.integers(0, 500)),
        min_size=1,
        max_size=40,
    )
)
def test_the_wait_is_never_negative_and_zero_without_a_queue(steps) -> None:
    """Whatever the groups write and handle (handled positions may even move back after a
    partition moved), the wait is finite, ≥ 0, and 0 when everything written is handled."""
    wait = PipelineWait()
    written = handled = entries = 0
    for second, (more_written, more_handled, more_entries) in enumerate(steps):
        written += more_written
        handled = min(written, max(0, handled + more_handled - 2_500))
        entries += more_entries
        wait.add(second * 1_000, entries, {"g": {"t:0": Partition(written, handled)}})
        seconds = wait.seconds()
        assert 0.0 <= seconds < float("inf")
        if written == handled:
            assert seconds == 0.0
