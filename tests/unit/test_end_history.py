"""Since when a record has existed, from samples of the partition ends (the front door's
measure of the coordinator's backlog, services/returns/pipeline_backlog.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.returns.pipeline_backlog import EndHistory


def test_a_record_exists_since_the_first_sample_whose_end_was_past_it():
    history = EndHistory(keep_ms=60_000)
    history.add(1_000, {0: 5, 1: 0})
    history.add(2_000, {0: 8, 1: 3})
    history.add(3_000, {0: 9, 1: 3})
    assert history.written_by(0, 6) == 2_000
    assert history.written_by(0, 8) == 3_000
    assert history.written_by(1, 0) == 2_000
    assert history.written_by(0, 9) is None  # not written yet
    assert history.written_by(0, 4) is None  # there before the history began


def test_samples_older_than_the_history_are_dropped_and_the_span_says_how_far_it_reaches():
    history = EndHistory(keep_ms=10_000)
    for second in range(30):
        history.add(second * 1_000, {0: second})
    assert history.span_ms(29_000) == 10_000
    assert history.written_by(0, 25) == 26_000
    assert history.written_by(0, 3) is None  # its sample is gone
    assert len(history.samples) == 11


@given(st.lists(st.integers(0, 5), min_size=1, max_size=50), st.integers(0, 200))
def test_the_time_found_is_the_first_sample_holding_the_offset(steps, offset):
    history = EndHistory(keep_ms=10**9)
    end, first_holding = 0, None
    for index, step in enumerate(steps):
        end += step
        history.add(index, {0: end})
        if first_holding is None and end > offset:
            first_holding = index
    expected = None if first_holding == 0 else first_holding
    assert history.written_by(0, offset) == expected
