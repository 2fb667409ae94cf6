"""Money: integer minor units of a known ISO 4217 currency, never a float."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.decisions.money import CURRENCY_EXPONENTS, Money, MoneyError

CURRENCIES = sorted(CURRENCY_EXPONENTS)
amounts = st.integers(-(10**15), 10**15)


# ------------------------------------------------------------------ construction


def test_money_holds_integer_minor_units_and_a_currency() -> None:
    money = Money(1999, "EUR")
    assert (money.amount_minor, money.currency) == (1999, "EUR")


@pytest.mark.parametrize("currency", CURRENCIES)
def test_every_listed_currency_is_accepted(currency: str) -> None:
    assert Money(1, currency).currency == currency


@pytest.mark.parametrize(
    "amount",
    [19.99, 1.0, 0.0, float("nan"), float("inf"), Decimal("19.99"), Fraction(1, 2), "1999", None],
    ids=repr,
)
def test_non_integer_amount_is_refused(amount: Any) -> None:
    with pytest.raises(MoneyError, match="amount_minor must be an integer"):
        Money(amount, "EUR")


@pytest.mark.parametrize("amount", [True, False])
def test_boolean_amount_is_refused(amount: bool) -> None:
    with pytest.raises(MoneyError, match="amount_minor must be an integer"):
        Money(amount, "EUR")


@pytest.mark.parametrize("currency", ["XXX", "eur", "EURO", "", "€", None, 978, "BTC"])
def test_unknown_currency_is_refused(currency: Any) -> None:
    with pytest.raises(MoneyError, match="currency"):
        Money(100, currency)


def test_money_error_is_a_value_error() -> None:
    assert issubclass(MoneyError, ValueError)


def test_money_is_immutable() -> None:
    money = Money(1, "EUR")
    with pytest.raises(AttributeError):
        money.amount_minor = 2  # type: ignore[misc]


def test_zero_is_zero_minor_units() -> None:
    assert Money.zero("JPY") == Money(0, "JPY")


def test_zero_of_an_unknown_currency_is_refused() -> None:
    with pytest.raises(MoneyError):
        Money.zero("XXX")


def test_record_roundtrip() -> None:
    money = Money(-1234, "KWD")
    assert money.to_record() == {"amount_minor": -1234, "currency": "KWD"}
    assert Money.from_record(money.to_record()) == money


@pytest.mark.parametrize(
    "record",
    [
        {"amount_minor": 19.99, "currency": "EUR"},
        {"amount_minor": True, "currency": "EUR"},
        {"amount_minor": 1999, "currency": "eur"},
    ],
    ids=["float", "bool", "lowercase-currency"],
)
def test_invalid_record_is_refused(record: dict[str, Any]) -> None:
    with pytest.raises(MoneyError):
        Money.from_record(record)


def test_equality_needs_the_same_currency() -> None:
    assert Money(100, "EUR") == Money(100, "EUR")
    assert Money(100, "EUR") != Money(100, "USD")


# ------------------------------------------------------------------ arithmetic


def test_add_in_one_currency() -> None:
    assert Money(1999, "EUR") + Money(1, "EUR") == Money(2000, "EUR")


def test_sub_in_one_currency() -> None:
    assert Money(500, "JPY") - Money(700, "JPY") == Money(-200, "JPY")


def test_add_across_currencies_is_refused() -> None:
    with pytest.raises(MoneyError, match="EUR and USD"):
        Money(1, "EUR") + Money(1, "USD")


def test_sub_across_currencies_is_refused() -> None:
    with pytest.raises(MoneyError, match="KWD and JPY"):
        Money(1, "KWD") - Money(1, "JPY")


def test_times_multiplies_minor_units() -> None:
    assert Money(1999, "EUR").times(3) == Money(5997, "EUR")


def test_times_zero_is_zero() -> None:
    assert Money(1999, "EUR").times(0) == Money.zero("EUR")


@pytest.mark.parametrize("quantity", [2.0, 1.5, True, "2", None], ids=repr)
def test_times_a_non_integer_quantity_is_refused(quantity: Any) -> None:
    with pytest.raises(MoneyError, match="quantity must be an integer"):
        Money(1999, "EUR").times(quantity)


# ------------------------------------------------------------------ str()


@pytest.mark.parametrize(
    ("money", "text"),
    [
        (Money(1500, "JPY"), "1500 JPY"),
        (Money(0, "JPY"), "0 JPY"),
        (Money(-1500, "JPY"), "-1500 JPY"),
        (Money(149000, "IDR"), "149000 IDR"),
        (Money(1999, "EUR"), "19.99 EUR"),
        (Money(5, "EUR"), "0.05 EUR"),
        (Money(50, "EUR"), "0.50 EUR"),
        (Money(100, "EUR"), "1.00 EUR"),
        (Money(0, "EUR"), "0.00 EUR"),
        (Money(-5, "EUR"), "-0.05 EUR"),
        (Money(-1999, "EUR"), "-19.99 EUR"),
        (Money(123456789, "USD"), "1234567.89 USD"),
        (Money(1234, "KWD"), "1.234 KWD"),
        (Money(1, "KWD"), "0.001 KWD"),
        (Money(10, "KWD"), "0.010 KWD"),
        (Money(-1, "KWD"), "-0.001 KWD"),
        (Money(-12000, "BHD"), "-12.000 BHD"),
    ],
    ids=str,
)
def test_str_uses_the_currencys_minor_unit_exponent(money: Money, text: str) -> None:
    assert str(money) == text


@given(currency=st.sampled_from(CURRENCIES), amount=amounts)
def test_str_reads_back_to_the_same_amount(currency: str, amount: int) -> None:
    number, code = str(Money(amount, currency)).split(" ")
    exponent = CURRENCY_EXPONENTS[currency]
    assert code == currency
    assert Decimal(number) * 10**exponent == amount
    decimals = len(number.split(".")[1]) if "." in number else 0
    assert decimals == exponent


# ------------------------------------------------------------------ properties


@given(currency=st.sampled_from(CURRENCIES), a=amounts, b=amounts)
def test_add_then_sub_gives_back_the_first_amount(currency: str, a: int, b: int) -> None:
    x, y = Money(a, currency), Money(b, currency)
    assert (x + y) - y == x
    assert x + y == y + x


@given(
    currency=st.sampled_from(CURRENCIES),
    a=amounts,
    b=amounts,
    quantity=st.integers(-1000, 1000),
)
def test_arithmetic_stays_in_integers(currency: str, a: int, b: int, quantity: int) -> None:
    x, y = Money(a, currency), Money(b, currency)
    for result in (x + y, x - y, x.times(quantity), Money.from_record(x.to_record())):
        assert type(result.amount_minor) is int
        assert result.currency == currency


@given(
    pair=st.lists(st.sampled_from(CURRENCIES), min_size=2, max_size=2, unique=True),
    a=amounts,
    b=amounts,
)
def test_any_two_different_currencies_never_combine(pair: list[str], a: int, b: int) -> None:
    x, y = Money(a, pair[0]), Money(b, pair[1])
    with pytest.raises(MoneyError):
        x + y
    with pytest.raises(MoneyError):
        x - y


@given(amount=st.floats(allow_nan=True, allow_infinity=True), currency=st.sampled_from(CURRENCIES))
def test_no_float_is_ever_accepted(amount: float, currency: str) -> None:
    with pytest.raises(MoneyError):
        Money(amount, currency)
