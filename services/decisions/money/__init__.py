"""Money: integer minor units and an ISO 4217 code. Never a float."""

from __future__ import annotations

from dataclasses import dataclass

# ISO 4217 minor-unit exponents for the currencies the marketplace settles in.
# IDR and VND have a minor unit on paper but are used without one by marketplaces.
# an order's price, fee or line above this many minor units is a typo, not an order (the
# front door, the order record it reads and the marketplace double refuse it)
MAX_ORDER_AMOUNT_MINOR = 10**13

CURRENCY_EXPONENTS: dict[str, int] = {
    "JPY": 0,
    "KRW": 0,
    "IDR": 0,
    "VND": 0,
    "CLP": 0,
    "ISK": 0,
    "EUR": 2,
    "USD": 2,
    "GBP": 2,
    "SGD": 2,
    "MYR": 2,
    "THB": 2,
    "PHP": 2,
    "AUD": 2,
    "CNY": 2,
    "HKD": 2,
    "TWD": 2,
    "INR": 2,
    "BRL": 2,
    "MXN": 2,
    "CHF": 2,
    "SEK": 2,
    "KWD": 3,
    "BHD": 3,
    "JOD": 3,
    "OMR": 3,
    "TND": 3,
}


class MoneyError(ValueError):
    """An amount that is not integer minor units of a known currency, or mixed currencies."""


@dataclass(frozen=True, order=True)
class Money:
    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise MoneyError(f"amount_minor must be an integer, got {self.amount_minor!r}")
        if self.currency not in CURRENCY_EXPONENTS:
            raise MoneyError(f"unknown or unsupported currency {self.currency!r}")

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def times(self, quantity: int) -> Money:
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise MoneyError(f"quantity must be an integer, got {quantity!r}")
        return Money(self.amount_minor * quantity, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise MoneyError(f"cannot combine {self.currency} and {other.currency}")

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def from_record(cls, record: dict) -> Money:
        return cls(record["amount_minor"], record["currency"])

    def to_record(self) -> dict:
        return {"amount_minor": self.amount_minor, "currency": self.currency}

    def __str__(self) -> str:
        exponent = CURRENCY_EXPONENTS[self.currency]
        sign = "-" if self.amount_minor < 0 else ""
        units, minor = divmod(abs(self.amount_minor), 10**exponent)
        return (
            f"{sign}{units}{'.' + str(minor).zfill(exponent) if exponent else ''} {self.currency}"
        )


def shown_amount(
    amount_minor: int, currency: str, decimal_separator: str = ".", thousands_separator: str = ""
) -> str:
    """`-1.234,56 EUR`: minor units shown with the currency's decimals and the reader's
    separators (statements, notifications)."""
    exponent = CURRENCY_EXPONENTS.get(currency, 2)
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 10**exponent)
    grouped = f"{whole:,}".replace(",", thousands_separator)
    decimals = f"{decimal_separator}{fraction:0{exponent}d}" if exponent else ""
    return f"{sign}{grouped}{decimals} {currency}".rstrip()
