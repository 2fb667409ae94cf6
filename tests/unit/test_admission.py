"""The front door's admission decision (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.decisions.admission import MAX_RETRY_AFTER_S, AdmissionLimits, admission

LIMITS = AdmissionLimits(max_wait_s=30.0, max_in_flight=10)


@given(
    st.one_of(st.none(), st.floats(0, 10_000, allow_nan=False)),
    st.integers(0, 50),
)
def test_a_return_is_refused_exactly_when_a_limit_is_passed(waiting_s, in_flight) -> None:
    refusal = admission(waiting_s, in_flight, LIMITS)
    passed = in_flight > 10 or (waiting_s is not None and waiting_s > 30.0)
    assert (refusal is not None) == passed
    if refusal is not None:
        assert 1 <= refusal.retry_after_s <= MAX_RETRY_AFTER_S
        assert refusal.reason


def test_the_retry_after_grows_with_how_far_the_wait_is_over_the_limit() -> None:
    assert admission(30.5, 0, LIMITS).retry_after_s == 1
    assert admission(45.0, 0, LIMITS).retry_after_s == 15
    assert admission(3_600.0, 0, LIMITS).retry_after_s == MAX_RETRY_AFTER_S
    assert admission(None, 0, LIMITS) is None  # the broker could not be asked
