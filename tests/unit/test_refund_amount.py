"""How much a return refunds: unit price × quantity per line, summed; and the refund service's
own consistency check of a RefundRequested."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.decisions.money import CURRENCY_EXPONENTS, Money, MoneyError
from services.decisions.refunds.refund_amount import (
    RefundBreakdown,
    RefundLineAmount,
    check_refund_command,
    refund_for_lines,
)
from tests.support.return_events import return_lines


def return_line(
    sku: str = "SKU", quantity: int = 1, amount: Any = 1000, currency: Any = "EUR"
) -> dict[str, Any]:
    return {
        "order_line_id": None,
        "sku": sku,
        "quantity_returned": quantity,
        "quantity_bought": max(quantity, 1),
        "unit_price": {"amount_minor": amount, "currency": currency},
    }


def money(amount: Any, currency: str = "EUR") -> dict[str, Any]:
    return {"amount_minor": amount, "currency": currency}


def refund_line(sku: str, amount: Any, currency: str = "EUR", quantity: int = 1) -> dict:
    return {"sku": sku, "quantity": quantity, "amount": money(amount, currency)}


# ------------------------------------------------------------------ refund_for_lines


def test_each_line_refunds_unit_price_times_quantity() -> None:
    breakdown = refund_for_lines(return_lines())  # 2 × 19.99 EUR and 1 × 5.00 EUR
    assert breakdown.lines == (
        RefundLineAmount("SKU-RED-M", 2, Money(3998, "EUR")),
        RefundLineAmount("SKU-CAP", 1, Money(500, "EUR")),
    )


def test_total_is_the_sum_of_the_lines() -> None:
    assert refund_for_lines(return_lines()).total == Money(4498, "EUR")


def test_single_line_total_is_that_line() -> None:
    breakdown = refund_for_lines([return_line(quantity=3, amount=149000, currency="IDR")])
    assert breakdown.total == Money(447000, "IDR")


def test_zero_decimal_currency_is_summed_in_whole_units() -> None:
    lines = [return_line("A", 2, 1500, "JPY"), return_line("B", 1, 999, "JPY")]
    assert refund_for_lines(lines).total == Money(3999, "JPY")


def test_three_decimal_currency_is_summed_in_minor_units() -> None:
    lines = [return_line("A", 3, 1_005, "KWD"), return_line("B", 1, 1, "KWD")]
    assert str(refund_for_lines(lines).total) == "3.016 KWD"


def test_free_item_refunds_nothing_for_its_line() -> None:
    lines = [return_line("FREE", 1, 0), return_line("PAID", 1, 700)]
    breakdown = refund_for_lines(lines)
    assert breakdown.lines[0].amount == Money(0, "EUR")
    assert breakdown.total == Money(700, "EUR")


def test_line_records_are_avro_shaped() -> None:
    assert refund_for_lines(return_lines()).line_records() == [
        {"sku": "SKU-RED-M", "quantity": 2, "amount": {"amount_minor": 3998, "currency": "EUR"}},
        {"sku": "SKU-CAP", "quantity": 1, "amount": {"amount_minor": 500, "currency": "EUR"}},
    ]


def test_mixed_currencies_are_refused() -> None:
    with pytest.raises(MoneyError, match="cannot combine"):
        refund_for_lines([return_line("A", currency="EUR"), return_line("B", currency="USD")])


def test_no_lines_are_refused() -> None:
    with pytest.raises(MoneyError, match="at least one line"):
        refund_for_lines([])


@pytest.mark.parametrize("amount", [19.99, 1000.0, True], ids=repr)
def test_non_integer_unit_price_is_refused(amount: Any) -> None:
    with pytest.raises(MoneyError):
        refund_for_lines([return_line(amount=amount)])


@pytest.mark.parametrize("quantity", [1.0, 2.5, True], ids=repr)
def test_non_integer_quantity_is_refused(quantity: Any) -> None:
    with pytest.raises(MoneyError):
        refund_for_lines([return_line(quantity=quantity)])


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(MoneyError):
        refund_for_lines([return_line(currency="XXX")])


# ------------------------------------------------------------------ check_refund_command


def test_consistent_command_is_accepted_and_its_total_returned() -> None:
    lines = [refund_line("A", 3998), refund_line("B", 500)]
    assert check_refund_command(money(4498), lines) == Money(4498, "EUR")


def test_breakdown_from_refund_for_lines_passes_the_check() -> None:
    breakdown = refund_for_lines(return_lines("SGD"))
    total = check_refund_command(breakdown.total.to_record(), breakdown.line_records())
    assert total == breakdown.total


@pytest.mark.parametrize("total", [4497, 4499, 3998, 44980])
def test_total_that_is_not_the_sum_of_the_lines_is_refused(total: int) -> None:
    lines = [refund_line("A", 3998), refund_line("B", 500)]
    with pytest.raises(MoneyError, match=r"lines add up to 44\.98 EUR"):
        check_refund_command(money(total), lines)


@pytest.mark.parametrize("total", [0, -1, -4498])
def test_non_positive_amount_is_refused(total: int) -> None:
    with pytest.raises(MoneyError, match="must be positive"):
        check_refund_command(money(total), [refund_line("A", total)])


def test_command_without_lines_is_refused() -> None:
    with pytest.raises(MoneyError, match=r"lines add up to 0\.00 EUR"):
        check_refund_command(money(100), [])


def test_line_in_another_currency_is_refused() -> None:
    with pytest.raises(MoneyError, match="cannot combine"):
        check_refund_command(money(100), [refund_line("A", 100, "USD")])


def test_total_and_lines_in_another_currency_than_each_other_are_refused() -> None:
    with pytest.raises(MoneyError):
        check_refund_command(money(100, "JPY"), [refund_line("A", 100, "EUR")])


@pytest.mark.parametrize("amount", [44.98, 4498.0, True], ids=repr)
def test_non_integer_command_amount_is_refused(amount: Any) -> None:
    with pytest.raises(MoneyError):
        check_refund_command(money(amount), [refund_line("A", 4498)])


@pytest.mark.parametrize("amount", [3998.0, 39.98], ids=repr)
def test_non_integer_line_amount_is_refused(amount: Any) -> None:
    with pytest.raises(MoneyError):
        check_refund_command(money(4498), [refund_line("A", amount), refund_line("B", 500)])


def test_unknown_command_currency_is_refused() -> None:
    with pytest.raises(MoneyError):
        check_refund_command(money(100, "XXX"), [refund_line("A", 100)])


# ------------------------------------------------------------------ properties

line_specs = st.lists(
    st.tuples(st.integers(0, 10**9), st.integers(1, 10_000)),  # (unit price, quantity)
    min_size=1,
    max_size=20,
)


@given(specs=line_specs, currency=st.sampled_from(sorted(CURRENCY_EXPONENTS)))
def test_total_equals_the_sum_of_unit_price_times_quantity(
    specs: list[tuple[int, int]], currency: str
) -> None:
    lines = [return_line(f"S{i}", q, p, currency) for i, (p, q) in enumerate(specs)]
    breakdown = refund_for_lines(lines)
    assert [line.amount.amount_minor for line in breakdown.lines] == [p * q for p, q in specs]
    assert breakdown.total.amount_minor == sum(p * q for p, q in specs)
    assert breakdown.total.amount_minor == sum(line.amount.amount_minor for line in breakdown.lines)
    assert breakdown.total.currency == currency


@given(specs=line_specs, currency=st.sampled_from(sorted(CURRENCY_EXPONENTS)))
def test_no_float_anywhere_in_a_breakdown(specs: list[tuple[int, int]], currency: str) -> None:
    lines = [return_line(f"S{i}", q, p, currency) for i, (p, q) in enumerate(specs)]
    breakdown = refund_for_lines(lines)
    assert type(breakdown.total.amount_minor) is int
    for record in breakdown.line_records():
        assert type(record["quantity"]) is int
        assert type(record["amount"]["amount_minor"]) is int


@given(specs=line_specs)
def test_a_breakdown_with_a_positive_total_always_passes_the_command_check(
    specs: list[tuple[int, int]],
) -> None:
    breakdown = refund_for_lines([return_line(f"S{i}", q, p) for i, (p, q) in enumerate(specs)])
    if breakdown.total.amount_minor > 0:
        total = check_refund_command(breakdown.total.to_record(), breakdown.line_records())
        assert total == breakdown.total
        assert type(total.amount_minor) is int


@given(specs=line_specs, delta=st.integers(-1000, 1000).filter(bool))
def test_a_total_off_by_anything_fails_the_command_check(
    specs: list[tuple[int, int]], delta: int
) -> None:
    breakdown = refund_for_lines([return_line(f"S{i}", q, p) for i, (p, q) in enumerate(specs)])
    wrong = breakdown.total.amount_minor + delta
    with pytest.raises(MoneyError):
        check_refund_command(money(wrong), breakdown.line_records())


def test_breakdown_is_a_frozen_value() -> None:
    breakdown = refund_for_lines(return_lines())
    assert isinstance(breakdown, RefundBreakdown)
    with pytest.raises(AttributeError):
        breakdown.total = Money(1, "EUR")  # type: ignore[misc]
