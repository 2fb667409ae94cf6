"""Refund arithmetic: examples a support agent could check by hand, then properties over
random orders, discounts and sequences of partial returns (no minor unit lost or created,
the refunds of an order never exceed what was paid)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.decisions.money import CURRENCY_EXPONENTS
from services.decisions.money.allocation import AllocationError, cumulative_share, split_by_weights
from services.decisions.refunds.order_model import (
    Liable,
    Order,
    OrderLine,
    OrderRefundHistory,
    RefundArithmeticError,
    TaxBasis,
)
from services.decisions.refunds.refund_arithmetic import FeeTerms, calculate_refund

# ------------------------------------------------------------------ allocation


def test_largest_remainder_gives_the_leftover_units_to_the_largest_remainders():
    assert split_by_weights(100, [1, 1, 1]) == [34, 33, 33]
    assert split_by_weights(10, [5, 3, 2]) == [5, 3, 2]
    assert split_by_weights(7, [2, 3]) == [3, 4]  # exact 2.8 / 4.2
    assert split_by_weights(0, [0, 0]) == [0, 0]


def test_splitting_over_zero_weights_or_negatives_is_refused():
    with pytest.raises(AllocationError, match="all zero"):
        split_by_weights(5, [0, 0])
    with pytest.raises(AllocationError, match="negative"):
        split_by_weights(-1, [1])
    with pytest.raises(AllocationError, match="negative"):
        split_by_weights(1, [1, -1])


@settings(max_examples=1000)
@given(st.integers(0, 10**12), st.lists(st.integers(0, 10**9), min_size=1, max_size=30))
def test_split_parts_add_up_and_each_is_within_one_unit_of_its_exact_share(amount, weights):
    if sum(weights) == 0:
        weights = [*weights[:-1], 1]
    parts = split_by_weights(amount, weights)
    assert sum(parts) == amount
    total_weight = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        exact_floor = amount * weight // total_weight
        assert exact_floor <= part <= exact_floor + 1


@settings(max_examples=1000)
@given(st.integers(0, 10**12), st.integers(1, 500), st.data())
def test_cumulative_shares_of_any_sequence_add_up_to_the_amount(amount, of, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, of), max_size=12)))
    points = [0, *cuts, of]
    shares = [cumulative_share(amount, a, b, of) for a, b in itertools.pairwise(points)]
    assert sum(shares) == amount
    assert all(share >= 0 for share in shares)


# ------------------------------------------------------------------ examples

EUR_ORDER = Order(
    "ORD-1",
    "EUR",
    (
        OrderLine("L1", "SKU-SHOE", 5000, 2, category="shoes"),  # 2 × 50.00
        OrderLine("L2", "SKU-SOCK", 1000, 3, category="apparel"),  # 3 × 10.00
    ),
    discount_minor=1300,  # a 13.00 voucher on the order
    shipping_fee_minor=499,
    tax_rate_bp=1900,
)


def test_a_full_return_by_a_liable_seller_gives_back_exactly_what_was_paid():
    result = calculate_refund(EUR_ORDER, {"L1": 2, "L2": 3}, Liable.SELLER)
    assert result.total_minor == EUR_ORDER.paid_minor == 13000 - 1300 + 499
    l1, l2 = result.lines
    assert (l1.gross_minor, l1.discount_minor, l1.goods_minor) == (10000, 1000, 9000)
    assert (l2.gross_minor, l2.discount_minor, l2.goods_minor) == (3000, 300, 2700)
    assert l1.shipping_minor + l2.shipping_minor == 499
    # the VAT inside what the line refunds (goods and its shipping share), for the receipt
    assert l1.tax_included_minor == (9000 + l1.shipping_minor) * 1900 // 11900


def test_a_buyer_remorse_return_pays_no_shipping_back_and_bears_the_fees():
    fees = FeeTerms(return_shipping_fee_minor=350, restocking_fee_bp=1000)
    result = calculate_refund(EUR_ORDER, {"L1": 1}, Liable.BUYER, fees)
    [line] = result.lines
    assert line.goods_minor == 4500  # 50.00 − half of its 10.00 voucher share
    assert line.shipping_minor == 0
    assert line.restocking_fee_minor == 450
    assert line.return_shipping_minor == 350
    assert line.amount_minor == result.total_minor == 4500 - 450 - 350


def test_partial_returns_of_a_line_share_its_discount_without_losing_a_cent():
    order = Order("ORD-2", "EUR", (OrderLine("L1", "SKU-A", 1000, 3),), discount_minor=100)
    history = OrderRefundHistory()
    refunds = []
    for units in (1, 1, 1):
        result = calculate_refund(order, {"L1": units}, Liable.SELLER, history=history)
        refunds.append(result.total_minor)
        history = result.history_after
    assert refunds == [966, 967, 967]  # 2900 in thirds: the remainders land where they fall
    assert sum(refunds) == order.paid_minor


US_ORDER = Order(  # sales tax on top: 8.25 on the line of 4 × 25.00
    "ORD-US",
    "USD",
    (OrderLine("L1", "SKU-A", 2500, 4, tax_minor=825),),
    tax_basis=TaxBasis.EXCLUSIVE,
)


def test_exclusive_tax_is_refunded_on_top_of_the_goods():
    result = calculate_refund(US_ORDER, {"L1": 1}, Liable.SELLER)
    assert result.lines[0].tax_minor == 206
    assert result.total_minor == 2500 + 206


def test_exclusive_tax_on_goods_kept_back_as_fees_is_not_refunded():
    fees = FeeTerms(restocking_fee_bp=2000, return_shipping_fee_minor=300)
    [line] = calculate_refund(US_ORDER, {"L1": 1}, Liable.BUYER, fees).lines
    assert line.restocking_fee_minor == 500  # 20 % of 25.00
    assert line.tax_minor == 206 * 2000 // 2500  # the tax on the 20.00 refunded: 1.64
    assert line.amount_minor == 2500 - 500 + 164 - 300


def test_inclusive_tax_shown_is_the_tax_inside_what_is_refunded_after_fees():
    fees = FeeTerms(return_shipping_fee_minor=350, restocking_fee_bp=1000)
    [line] = calculate_refund(EUR_ORDER, {"L1": 1}, Liable.BUYER, fees).lines
    assert line.amount_minor == 4500 - 450 - 350
    assert line.tax_included_minor == 3700 * 1900 // 11900  # 5.90 of the 37.00, not of 45.00
    assert line.tax_minor == 0  # never added on top


@pytest.mark.parametrize(
    ("currency", "price", "quantity"), [("IDR", 149_000, 3), ("JPY", 3999, 1), ("KWD", 1_508, 2)]
)
def test_currencies_of_every_exponent_are_integers_end_to_end(currency, price, quantity):
    order = Order(f"ORD-{currency}", currency, (OrderLine("L1", "SKU", price, quantity),))
    result = calculate_refund(order, {"L1": quantity}, Liable.SELLER)
    assert isinstance(result.total_minor, int)
    assert result.total_minor == price * quantity


def test_fees_larger_than_the_refund_stop_at_zero():
    order = Order("ORD-3", "EUR", (OrderLine("L1", "SKU", 300, 1),))
    fees = FeeTerms(return_shipping_fee_minor=5000, restocking_fee_flat_minor=100)
    result = calculate_refund(order, {"L1": 1}, Liable.BUYER, fees)
    assert result.total_minor == 0
    assert result.lines[0].restocking_fee_minor == 100
    assert result.lines[0].return_shipping_minor == 200
    assert "capped" in result.notes[0]


def test_returning_more_than_was_bought_over_several_returns_is_refused():
    order = Order("ORD-4", "EUR", (OrderLine("L1", "SKU", 300, 2),))
    first = calculate_refund(order, {"L1": 2}, Liable.SELLER)
    with pytest.raises(RefundArithmeticError, match="returning 1 after 2 of 2"):
        calculate_refund(order, {"L1": 1}, Liable.SELLER, history=first.history_after)


@pytest.mark.parametrize(
    ("lines", "kwargs", "message"),
    [
        ((), {}, "has no lines"),
        ((OrderLine("L1", "S", 100, 1), OrderLine("L1", "S", 100, 1)), {}, "repeats a line id"),
        ((OrderLine("L1", "S", 100, 0),), {}, "quantity must be positive"),
        ((OrderLine("L1", "S", -1, 1),), {}, "unit_price_minor must be a non-negative"),
        ((OrderLine("L1", "S", 1.5, 1),), {}, "unit_price_minor must be a non-negative"),  # type: ignore[arg-type]
        ((OrderLine("L1", "S", 100, 1),), {"discount_minor": 101}, "discounts"),
        ((OrderLine("L1", "S", 100, 1, tax_minor=5),), {}, "EXCLUSIVE"),
        ((OrderLine("L1", "S", 100, 1),), {"currency": "XXX"}, "currency"),
    ],
)
def test_orders_that_cannot_be_refunded_say_why(lines, kwargs, message):
    with pytest.raises(RefundArithmeticError, match=message):
        Order("ORD-X", kwargs.pop("currency", "EUR"), lines, **kwargs)


# ------------------------------------------------------------------ properties


@st.composite
def orders(draw):
    currency = draw(st.sampled_from(sorted(CURRENCY_EXPONENTS)))
    basis = draw(st.sampled_from(list(TaxBasis)))
    count = draw(st.integers(1, 6))
    lines = tuple(
        OrderLine(
            f"L{i}",
            f"SKU-{i}",
            draw(st.integers(0, 5_000_000)),
            draw(st.integers(1, 7)),
            draw(st.integers(0, 400_000)) if basis == TaxBasis.EXCLUSIVE else 0,
        )
        for i in range(count)
    )
    gross = sum(line.gross_minor for line in lines)
    return Order(
        "ORD-P",
        currency,
        lines,
        discount_minor=draw(st.integers(0, gross)),
        shipping_fee_minor=draw(st.integers(0, 200_000)),
        tax_basis=basis,
        tax_rate_bp=draw(st.integers(0, 2500)) if basis == TaxBasis.INCLUSIVE else 0,
    )


@st.composite
def return_sequences(draw, order: Order):
    """Partial returns until every unit is back: each a {line_id: units} map."""
    left = {line.line_id: line.quantity for line in order.lines}
    sequence = []
    while any(left.values()):
        open_lines = [line_id for line_id, units in left.items() if units]
        chosen = draw(st.lists(st.sampled_from(open_lines), min_size=1, unique=True))
        step = {line_id: draw(st.integers(1, left[line_id])) for line_id in chosen}
        for line_id, units in step.items():
            left[line_id] -= units
        sequence.append(step)
    return sequence


fee_terms = st.builds(
    FeeTerms,
    return_shipping_fee_minor=st.integers(0, 50_000),
    restocking_fee_bp=st.integers(0, 10_000),
    restocking_fee_flat_minor=st.integers(0, 20_000),
    damage_deduction_bp=st.integers(0, 10_000),
)


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_every_unit_returned_with_the_seller_liable_refunds_exactly_what_was_paid(data):
    order = data.draw(orders())
    history = OrderRefundHistory()
    total = 0
    for step in data.draw(return_sequences(order)):
        liable = data.draw(st.sampled_from([Liable.SELLER, Liable.PLATFORM, Liable.CARRIER]))
        result = calculate_refund(order, step, liable, history=history)
        assert result.total_minor == sum(line.amount_minor for line in result.lines)
        assert result.total_minor >= 0
        total += result.total_minor
        assert total <= order.paid_minor
        history = result.history_after
    assert total == order.paid_minor  # not one minor unit lost or created


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_any_mix_of_liabilities_and_fees_never_refunds_more_than_was_paid(data):
    order = data.draw(orders())
    history = OrderRefundHistory()
    total = 0
    for step in data.draw(return_sequences(order)):
        liable = data.draw(st.sampled_from(list(Liable)))
        fees = data.draw(fee_terms)
        result = calculate_refund(order, step, liable, fees, history)
        no_fees = calculate_refund(order, step, liable, FeeTerms(), history)
        full_tax = {line.line_id: line.tax_minor for line in no_fees.lines}
        for line in result.lines:
            deducted = (
                line.return_shipping_minor + line.restocking_fee_minor + line.damage_deduction_minor
            )
            assert line.amount_minor == (
                line.goods_minor + line.tax_minor + line.shipping_minor - deducted
            )
            assert line.amount_minor >= 0
            assert line.goods_minor == line.gross_minor - line.discount_minor
            if liable != Liable.BUYER:
                assert deducted == 0
            else:
                assert line.shipping_minor == 0
            if order.tax_basis == TaxBasis.INCLUSIVE:  # the tax inside what is refunded
                assert line.tax_minor == 0
                rate = order.tax_rate_bp
                assert line.tax_included_minor == line.amount_minor * rate // (10_000 + rate)
            elif line.goods_minor:  # no tax refunded on goods kept back as fees
                kept = line.restocking_fee_minor + line.damage_deduction_minor
                assert line.tax_minor * line.goods_minor <= (
                    full_tax[line.line_id] * (line.goods_minor - kept)
                )
        total += result.total_minor
        assert total == result.history_after.refunded_minor
        history = result.history_after
    assert 0 <= total <= order.paid_minor
