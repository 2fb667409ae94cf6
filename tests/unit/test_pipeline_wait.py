"""How long a return taken now would wait in the services' queues (pure,
services/decisions/pipeline_wait.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.decisions.pipeline_wait import (
    MAX_VISITS,
    MIN_RATE,
    Partition,
    PipelineWait,
    RecentMean,
)

ENTRY = ("coordinator", "returns")
NEW = "coordinator:returns"  # the entry part


def _wait() -> PipelineWait:
    return PipelineWait(entry=ENTRY, rate_window_ms=10_000, visits_window_ms=60_000)


def _sample(wait: PipelineWait, second: int, entry: tuple[int, int], **groups: tuple[int, int]):
    """`entry`: (written, handled) of the entry topic; `groups`: (written, handled) of one
    input partition per group ("replies" for the coordinator's other inputs)."""
    sample = {"coordinator": {("returns", 0): Partition(*entry)}}
    for name, (written, handled) in groups.items():
        if name == "replies":
            sample["coordinator"][("replies", 0)] = Partition(written, handled)
        else:
            sample[name] = {("in", 0): Partition(written, handled)}
    wait.add(second * 1_000, sample)


def test_groups_that_keep_up_add_no_wait() -> None:
    wait = _wait()
    for second in range(31):
        n = second * 100
        _sample(wait, second, (n, n), replies=(5 * n, 5 * n), pickup=(n, n))
    assert wait.seconds() == 0.0
    assert wait.by_part() == {"coordinator:returns": 0.0, "coordinator": 0.0, "pickup": 0.0}


def test_a_part_waits_visits_times_its_queue_over_the_rate_it_is_handled_at() -> None:
    wait = _wait()
    for second in range(61):  # 200 returns/s started, 5 replies each: 1,000/s, 900/s handled
        _sample(wait, second, (second * 200, second * 200), replies=(second * 1_000, second * 900))
    queued = 59 * 1_000 - 60 * 900  # written as of the signal's lag (a second), not handled
    assert wait.by_part()["coordinator"] == pytest.approx(5 * queued / 900)
    assert wait.by_part()[NEW] == 0.0


def test_new_returns_drain_at_the_rate_the_entry_group_takes_them() -> None:
    """The coordinator pauses new returns while busy: their queue drains at the rate it
    starts them (170/s), not at the rate it handles its other inputs (1,000/s)."""
    wait = _wait()
    for second in range(61):
        _sample(wait, second, (second * 300, second * 170), replies=(second * 850, second * 850))
    queued = 59 * 300 - 60 * 170
    assert wait.by_part()[NEW] == pytest.approx(queued / 170)
    assert wait.seconds() == pytest.approx(queued / 170)


def test_visits_count_per_return_started_not_per_return_taken() -> None:
    """Under overload returns are taken faster than started: visits per taken return would
    read the downstream queues as shorter than a started return sees them."""
    wait = _wait()
    for second in range(61):  # 300/s taken, 150/s started, one pickup command each
        _sample(wait, second, (second * 300, second * 150), pickup=(second * 150, second * 100))
    queued = 59 * 150 - 60 * 100
    assert wait.by_part()["pickup"] == pytest.approx(1.0 * queued / 100)  # 1 command a return


def test_records_written_since_the_handled_signal_was_committed_are_not_queued() -> None:
    """The handled positions are committed once a second: a group that keeps up signals
    what was written a second before. That is no queue (counted, 1,000 records here made
    5 s of wait at 200 returns/s)."""
    wait = _wait()
    for second in range(31):
        _sample(
            wait,
            second,
            (second * 200, max(0, second - 1) * 200),
            replies=(second * 1_000, max(0, second - 1) * 1_000),
        )
    assert wait.seconds() == 0.0


def test_a_burst_shows_once_it_is_older_than_the_signal() -> None:
    wait = _wait()
    for second in range(61):
        _sample(wait, second, (second * 100, second * 100))
    for second, written, handled in ((61, 6_900, 6_200), (62, 7_000, 6_300)):
        _sample(wait, second, (written, handled))
    assert wait.seconds() == pytest.approx((6_900 - 6_300) / 100, rel=0.1)


def test_an_idle_group_is_not_taken_to_be_slow() -> None:
    wait = _wait()
    for second in range(20):  # a trickle: 3 records waiting, 0.5 a second handled
        _sample(wait, second, (second // 2, second // 2), pickup=(second // 2 + 3, second // 2))
    assert 0 < wait.seconds() <= 3 / MIN_RATE


def test_a_partition_that_appears_with_its_history_is_not_a_burst() -> None:
    wait = _wait()
    for second in range(61):
        _sample(wait, second, (second * 100, second * 100), pickup=(second * 100, second * 100))
    wait.add(
        61_000,
        {
            "coordinator": {("returns", 0): Partition(6_100, 6_100)},
            "pickup": {("in", 0): Partition(6_100, 6_100), ("in", 3): Partition(500_000, 499_990)},
        },
    )
    wait.add(
        62_000,
        {
            "coordinator": {("returns", 0): Partition(6_200, 6_200)},
            "pickup": {("in", 0): Partition(6_200, 6_200), ("in", 3): Partition(500_000, 499_990)},
        },
    )
    assert wait.by_part()["pickup"] == pytest.approx(10 / 100, rel=0.05)


def test_visits_are_one_over_too_few_started_returns_and_capped() -> None:
    wait = _wait()
    for second in range(10):  # 5 returns in all, a burst of other records
        _sample(
            wait,
            second,
            (second // 2, second // 2),
            refund=(second * 10_000, second * 10_000 - 20_000),
        )
    assert wait.by_part()["refund"] == pytest.approx(10_000 / 10_000)  # 1 visit, at its rate
    busy = _wait()
    for second in range(10):
        _sample(
            busy,
            second,
            (second * 200, second * 200),
            refund=(second * 100_000, second * 100_000 - 200_000),
        )
    assert busy.by_part()["refund"] == pytest.approx(MAX_VISITS * 100_000 / 100_000)


def test_samples_older_than_the_windows_are_dropped() -> None:
    wait = _wait()
    for second in range(601):
        _sample(wait, second, (second * 10, second * 10))
    assert wait.samples[0].at_ms >= 600_000 - 61_000
    assert len(wait.samples) <= 62


@given(
    st.lists(
        st.tuples(st.integers(0, 5_000), st.integers(0, 5_000), st.integers(0, 500)),
        min_size=1,
        max_size=40,
    )
)
def test_the_wait_is_never_negative_and_zero_when_all_is_handled(steps) -> None:
    """Whatever the groups write and handle (handled positions may even move back after a
    partition moved), the wait is finite, ≥ 0, and 0 when everything written is handled."""
    wait = _wait()
    written = handled = entries = 0
    for second, (more_written, more_handled, more_entries) in enumerate(steps):
        written += more_written
        handled = min(written, max(0, handled + more_handled - 2_500))
        entries += more_entries
        _sample(wait, second, (entries, entries), pickup=(written, handled))
        seconds = wait.seconds()
        assert 0.0 <= seconds < float("inf")
        if written == handled:
            assert seconds == 0.0


def test_admission_reads_the_mean_of_the_last_seconds() -> None:
    """One sample swings between 0 and a batch's worth of wait; admission reads the mean."""
    recent = RecentMean(window_ms=5_000)
    assert recent.mean() is None
    for second, value in enumerate((0.0, 13.0, 0.0, 0.0, 2.0, 0.0)):
        recent.add(second * 1_000, value)
    assert recent.mean() == pytest.approx((13.0 + 0.0 + 0.0 + 2.0 + 0.0) / 5)  # seconds 1-5
    assert len(recent.values) == 5
