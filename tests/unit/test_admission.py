"""The front door's admission decision (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.decisions.admission import (
    MAX_RETRY_AFTER_S,
    AdmissionLimits,
    Backlog,
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
