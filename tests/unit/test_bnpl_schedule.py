"""The BNPL instalment plan and how refunds reduce it (services.tools.partners.bnpl_schedule).

Property tests run MAX_EXAMPLES examples each.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.tools.partners.bnpl_schedule import (
    CANCELLED,
    DEFAULT_INTERVAL_MS,
    DUE,
    PAID,
    Instalment,
    Schedule,
    apply_refund,
    due_minor,
    plan,
)

MAX_EXAMPLES = 500
T0 = 1_790_000_000_000

paid_totals = st.integers(min_value=1, max_value=10**12)
counts = st.integers(min_value=1, max_value=24)


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    instalments = draw(counts)
    paid = draw(st.integers(min_value=instalments, max_value=10**12))
    return plan(paid, instalments, first_due_at_ms=T0)


def amounts(schedule: Schedule) -> list[int]:
    return [i.amount_minor for i in schedule]


def statuses(schedule: Schedule) -> list[str]:
    return [i.status for i in schedule]


# --- plan ------------------------------------------------------------------------------------


def test_plan_splits_into_four_monthly_instalments_the_first_paid() -> None:
    schedule = plan(10_000, first_due_at_ms=T0)

    assert schedule == (
        Instalment(1, T0, 2_500, PAID),
        Instalment(2, T0 + DEFAULT_INTERVAL_MS, 2_500, DUE),
        Instalment(3, T0 + 2 * DEFAULT_INTERVAL_MS, 2_500, DUE),
        Instalment(4, T0 + 3 * DEFAULT_INTERVAL_MS, 2_500, DUE),
    )
    assert DEFAULT_INTERVAL_MS == 30 * 24 * 3600 * 1000


def test_plan_spreads_the_remainder_over_the_first_instalments() -> None:
    assert amounts(plan(10_003, first_due_at_ms=T0)) == [2_501, 2_501, 2_501, 2_500]
    assert amounts(plan(10_001, first_due_at_ms=T0)) == [2_501, 2_500, 2_500, 2_500]
    assert amounts(plan(7, 3, first_due_at_ms=T0, interval_ms=10)) == [3, 2, 2]


@pytest.mark.parametrize(("paid", "instalments"), [(3, 4), (0, 1), (-5, 1), (100, 0)], ids=str)
def test_plan_refuses_instalments_below_one_minor_unit(paid: int, instalments: int) -> None:
    with pytest.raises(ValueError):
        plan(paid, instalments, first_due_at_ms=T0)


@settings(max_examples=MAX_EXAMPLES)
@given(paid=paid_totals, instalments=counts, interval=st.integers(0, 10**10))
def test_plan_sums_exactly_and_no_two_instalments_differ_by_more_than_one(
    paid: int, instalments: int, interval: int
) -> None:
    if paid < instalments:
        return
    schedule = plan(paid, instalments, first_due_at_ms=T0, interval_ms=interval)

    assert sum(amounts(schedule)) == paid
    assert len(schedule) == instalments
    assert max(amounts(schedule)) - min(amounts(schedule)) <= 1
    assert amounts(schedule) == sorted(amounts(schedule), reverse=True)  # remainder first
    assert statuses(schedule) == [PAID] + [DUE] * (instalments - 1)
    assert [i.number for i in schedule] == list(range(1, instalments + 1))
    assert [i.due_at for i in schedule] == [T0 + n * interval for n in range(instalments)]


# --- refunds -----------------------------------------------------------------------------------


def test_a_refund_reduces_the_last_instalment_first() -> None:
    schedule, to_buyer = apply_refund(plan(10_000, first_due_at_ms=T0), 1_000)

    assert amounts(schedule) == [2_500, 2_500, 2_500, 1_500]
    assert statuses(schedule) == [PAID, DUE, DUE, DUE]
    assert to_buyer == 0


def test_a_refund_cancels_whole_instalments_and_cuts_into_the_next() -> None:
    schedule, to_buyer = apply_refund(plan(10_000, first_due_at_ms=T0), 3_000)

    assert amounts(schedule) == [2_500, 2_500, 2_000, 0]
    assert statuses(schedule) == [PAID, DUE, DUE, CANCELLED]
    assert to_buyer == 0


def test_what_exceeds_everything_due_goes_back_to_the_buyer() -> None:
    schedule, to_buyer = apply_refund(plan(10_000, first_due_at_ms=T0), 9_000)

    assert amounts(schedule) == [2_500, 0, 0, 0]
    assert statuses(schedule) == [PAID, CANCELLED, CANCELLED, CANCELLED]
    assert to_buyer == 1_500


def test_two_refunds_of_one_order_apply_one_after_another() -> None:
    first, first_to_buyer = apply_refund(plan(10_000, first_due_at_ms=T0), 3_000)
    second, second_to_buyer = apply_refund(first, 5_000)
    third, third_to_buyer = apply_refund(second, 1_000)

    assert (amounts(first), first_to_buyer) == ([2_500, 2_500, 2_000, 0], 0)
    assert (amounts(second), second_to_buyer) == ([2_500, 0, 0, 0], 500)
    assert statuses(second) == [PAID, CANCELLED, CANCELLED, CANCELLED]
    assert (third, third_to_buyer) == (second, 1_000)


def test_a_zero_refund_changes_nothing_and_a_negative_one_is_refused() -> None:
    schedule = plan(10_000, first_due_at_ms=T0)

    assert apply_refund(schedule, 0) == (schedule, 0)
    with pytest.raises(ValueError):
        apply_refund(schedule, -1)


def test_instalments_round_trip_through_json() -> None:
    schedule = apply_refund(plan(10_001, first_due_at_ms=T0), 2_600)[0]

    assert tuple(Instalment.from_json(i.to_json()) for i in schedule) == schedule
    assert schedule[3].to_json() == {
        "number": 4,
        "due_at": T0 + 3 * DEFAULT_INTERVAL_MS,
        "amount_minor": 0,
        "status": CANCELLED,
    }


@settings(max_examples=MAX_EXAMPLES)
@given(schedule=schedules(), refund=st.integers(min_value=0, max_value=2 * 10**12))
def test_a_refund_neither_creates_nor_loses_a_minor_unit(schedule: Schedule, refund: int) -> None:
    after, to_buyer = apply_refund(schedule, refund)

    assert due_minor(schedule) - due_minor(after) + to_buyer == refund
    assert to_buyer == max(0, refund - due_minor(schedule))
    assert all(i.amount_minor >= 0 for i in after) and to_buyer >= 0
    # PAID instalments, numbers and due dates never change
    assert [(i.number, i.due_at) for i in after] == [(i.number, i.due_at) for i in schedule]
    assert [i for i in after if i.status == PAID] == [i for i in schedule if i.status == PAID]
    # an instalment is CANCELLED exactly when it is 0, DUE ones only shrink
    for old, new in zip(schedule, after, strict=True):
        assert (new.status == CANCELLED) == (new.amount_minor == 0)
        assert new.amount_minor <= old.amount_minor


@settings(max_examples=MAX_EXAMPLES)
@given(schedule=schedules(), refund=st.integers(min_value=0, max_value=2 * 10**12))
def test_a_refund_takes_from_the_last_due_instalments_first(
    schedule: Schedule, refund: int
) -> None:
    after, _ = apply_refund(schedule, refund)

    # at most one instalment is cut in part, and everything after it is cancelled
    touched = [n for n, (old, new) in enumerate(zip(schedule, after, strict=True)) if old != new]
    if touched:
        first = touched[0]
        assert all(i.status == CANCELLED for i in after[first + 1 :])
        assert all(old == new for old, new in zip(schedule[:first], after[:first], strict=True))


@settings(max_examples=MAX_EXAMPLES)
@given(
    schedule=schedules(),
    refunds=st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=6),
)
def test_refunds_in_sequence_add_up_like_one_refund_of_their_sum(
    schedule: Schedule, refunds: list[int]
) -> None:
    current, to_buyer_total = schedule, 0
    for refund in refunds:
        current, to_buyer = apply_refund(current, refund)
        assert to_buyer >= 0 and all(i.amount_minor >= 0 for i in current)
        to_buyer_total += to_buyer

    assert due_minor(schedule) - due_minor(current) + to_buyer_total == sum(refunds)
    assert (current, to_buyer_total) == apply_refund(schedule, sum(refunds))
