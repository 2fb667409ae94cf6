"""The front door's admission decision (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.decisions.admission import (
    MAX_RETRY_AFTER_S,
    PACE_AT_LIMIT,
    PACE_HOLD_MS,
    AdmissionLimits,
    Backlog,
    Pace,
    admission,
    refused_share,
)

LIMITS = AdmissionLimits(
    max_pipeline_wait_s=10.0, early_share=0.5, max_wait_s=30.0, max_in_flight=10
)
waits = st.one_of(st.none(), st.floats(0, 10_000, allow_nan=False))


@given(waits, waits, st.integers(0, 50), st.floats(0, 1, exclude_max=True))
def test_a_return_is_refused_exactly_when_a_limit_is_passed_or_the_draw_is_under_the_share(
    waiting_s, pipeline_wait_s, in_flight, draw
) -> None:
    refusal = admission(Backlog(waiting_s, pipeline_wait_s), in_flight, LIMITS, draw)
    passed = (
        in_flight > 10
        or (waiting_s is not None and waiting_s > 30.0)
        or (pipeline_wait_s is not None and pipeline_wait_s >= 10.0)
        or (pipeline_wait_s is not None and draw < refused_share(pipeline_wait_s, LIMITS))
    )
    assert (refusal is not None) == passed
    if refusal is not None:
        assert 1 <= refusal.retry_after_s <= MAX_RETRY_AFTER_S
        assert refusal.reason


@given(st.floats(0, 100, allow_nan=False), st.floats(0, 100, allow_nan=False))
def test_the_refused_share_grows_from_nothing_at_the_early_point_to_everything_at_the_limit(
    lower, higher
) -> None:
    lower, higher = sorted((lower, higher))
    assert 0.0 <= refused_share(lower, LIMITS) <= refused_share(higher, LIMITS) <= 1.0
    if higher <= 5.0:
        assert refused_share(higher, LIMITS) == 0.0
    if lower >= 10.0:
        assert refused_share(lower, LIMITS) == 1.0


@pytest.mark.parametrize(
    ("expected_s", "share"), [(0.0, 0.0), (5.0, 0.0), (6.0, 0.2), (7.5, 0.5), (10.0, 1.0)]
)
def test_the_refused_share_between_the_early_point_and_the_limit(expected_s, share) -> None:
    assert refused_share(expected_s, LIMITS) == pytest.approx(share)


def test_without_early_refusals_only_the_limit_refuses() -> None:
    limits = AdmissionLimits(max_pipeline_wait_s=10.0, early_share=1.0)
    assert admission(Backlog(pipeline_wait_s=9.99), 0, limits, 0.0) is None
    assert admission(Backlog(pipeline_wait_s=10.0), 0, limits, 0.999) is not None


def test_the_default_draw_refuses_only_at_the_limit() -> None:
    assert admission(Backlog(pipeline_wait_s=9.9), 0, LIMITS) is None
    refusal = admission(Backlog(pipeline_wait_s=12.0), 0, LIMITS)
    assert refusal is not None and "queues" in refusal.reason
    assert refusal.retry_after_s == 7  # 12 s against refusals from 5 s


def test_the_retry_after_grows_with_how_far_the_wait_is_over_the_limit() -> None:
    assert admission(Backlog(30.5), 0, LIMITS).retry_after_s == 1
    assert admission(Backlog(45.0), 0, LIMITS).retry_after_s == 15
    assert admission(Backlog(3_600.0), 0, LIMITS).retry_after_s == MAX_RETRY_AFTER_S
    assert admission(Backlog(), 0, LIMITS, 0.0) is None  # the broker could not be asked


PACED = AdmissionLimits(max_pipeline_wait_s=10.0, early_share=0.5)


def _taken(pace: Pace, backlog: Backlog, offered_per_s: int, seconds: int, share: float = 1.0):
    """How many of `offered_per_s` requests a second for `seconds` the pace lets in."""
    taken = 0
    for n in range(offered_per_s * seconds):
        now_ms = n * 1000 // offered_per_s
        taken += pace.admits(now_ms, backlog, PACED, share) is None
    return taken


def test_no_pace_while_the_queues_are_short_or_no_part_has_one() -> None:
    assert _taken(Pace(), Backlog(pipeline_wait_s=5.0, bottleneck_per_s=10.0), 400, 5) == 2_000
    assert _taken(Pace(), Backlog(pipeline_wait_s=8.0, bottleneck_per_s=None), 400, 5) == 2_000


def test_past_the_early_point_returns_are_let_in_at_the_bottlenecks_pace() -> None:
    taken = _taken(Pace(), Backlog(pipeline_wait_s=5.01, bottleneck_per_s=120.0), 480, 10)
    assert taken == pytest.approx(120 * 10 + 120, abs=3)  # its pace, and a second's burst


def test_the_pace_slows_towards_the_limit_so_the_queues_drain() -> None:
    at_limit = _taken(Pace(), Backlog(pipeline_wait_s=9.99, bottleneck_per_s=120.0), 480, 10)
    assert at_limit == pytest.approx(120 * PACE_AT_LIMIT * 11, rel=0.02)


def test_each_instance_keeps_its_share_of_the_pace() -> None:
    taken = _taken(Pace(), Backlog(pipeline_wait_s=6.0, bottleneck_per_s=120.0), 240, 10, 0.5)
    assert taken == pytest.approx(120 * 0.5 * 0.9 * 11, abs=3)  # 6 s: a fifth to the limit


def test_the_pace_is_held_a_while_after_the_wait_fell_below_the_early_point() -> None:
    pace = Pace()
    assert pace.admits(0, Backlog(pipeline_wait_s=6.0, bottleneck_per_s=2.0), PACED) is None
    calm = Backlog(pipeline_wait_s=1.0, bottleneck_per_s=2.0)
    answers = [pace.admits(1_000 + n, calm, PACED) for n in range(5)]
    assert any(refusal is not None for refusal in answers)  # still paced: 2/s
    assert all(pace.admits(PACE_HOLD_MS + 2_000 + n, calm, PACED) is None for n in range(50))


@given(
    st.lists(
        st.tuples(st.floats(0, 30, allow_nan=False), st.floats(0, 500, allow_nan=False)),
        min_size=1,
        max_size=30,
    )
)
def test_over_any_second_the_pace_lets_in_at_most_its_rate_and_a_burst(readings) -> None:
    """Whatever the readings, each second the pace lets in no more than the highest pace
    of that second plus the burst carried into it."""
    pace = Pace()
    for second, (wait, per_s) in enumerate(readings):
        backlog = Backlog(pipeline_wait_s=wait, bottleneck_per_s=per_s)
        taken = sum(
            pace.admits(second * 1000 + n, backlog, PACED) is None for n in range(0, 1000, 2)
        )
        if wait > 5.0:
            assert taken <= 2 * max(1.0, per_s) + 1
