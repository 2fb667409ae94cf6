"""Conversion between currencies in integer minor units (pure), at a rate given as a
decimal string (the rate locked on the order, or the day's published rate), exact on
fractions: nothing is computed in floating point.

A set of lines is converted line by line (a seller's statement shows each converted
line) and as a whole; the whole, rounded half to even, is what the conversion is worth,
and the difference between it and the lines' sum is the **rounding residue**, booked to
the rounding account, so the lines plus the residue always add up to the converted whole:
no minor unit is created or lost across lines. (The sub-unit difference between the exact
converted value and the rounded whole is the conversion's own, at most half a unit.)
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from services.decisions.money import CURRENCY_EXPONENTS

MAX_RATE_DIGITS = 18


class FxError(ValueError):
    """A rate that is not a positive decimal, or a currency without an exponent."""


@dataclass(frozen=True)
class Rate:
    """How many units of `quote` one unit of `base` buys (major units, as quoted)."""

    base: str
    quote: str
    value: Fraction

    @classmethod
    def parse(cls, base: str, quote: str, text: str) -> Rate:
        for currency in (base, quote):
            if currency not in CURRENCY_EXPONENTS:
                raise FxError(f"unknown currency {currency!r}")
        try:
            decimal = Decimal(text)
        except (InvalidOperation, TypeError) as exc:
            raise FxError(f"rate {text!r} is not a decimal number") from exc
        if not decimal.is_finite() or decimal <= 0:
            raise FxError(f"rate {text!r} must be a positive number")
        if len(decimal.as_tuple().digits) > MAX_RATE_DIGITS:
            raise FxError(f"rate {text!r} has more than {MAX_RATE_DIGITS} digits")
        if base == quote and decimal != 1:
            raise FxError(f"a rate from {base} to itself must be 1, got {text}")
        return cls(base, quote, Fraction(decimal))

    @classmethod
    def identity(cls, currency: str) -> Rate:
        return cls(currency, currency, Fraction(1))


def exact(amount_minor: int, rate: Rate) -> Fraction:
    """`amount_minor` of the base currency in minor units of the quote currency, exactly."""
    shift = CURRENCY_EXPONENTS[rate.quote] - CURRENCY_EXPONENTS[rate.base]
    return amount_minor * rate.value * Fraction(10) ** shift


def round_half_even(value: Fraction) -> int:
    return round(value)  # Fraction.__round__ without digits rounds half to even


def convert(amount_minor: int, rate: Rate) -> int:
    return round_half_even(exact(amount_minor, rate))


@dataclass(frozen=True)
class Converted:
    lines: tuple[int, ...]  # each line converted on its own (rounded half to even)
    whole: int  # the lines' sum converted as one amount
    residue: int  # whole − sum(lines): booked to the rounding account


def convert_lines(lines: tuple[int, ...] | list[int], rate: Rate) -> Converted:
    converted = tuple(convert(line, rate) for line in lines)
    whole = convert(sum(lines), rate)
    return Converted(converted, whole, whole - sum(converted))
