"""The order as it was paid, the unit positions a return takes and what earlier returns of
the order refunded: the inputs of the refund arithmetic (`refund_arithmetic`), pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from services.decisions.money import CURRENCY_EXPONENTS, MoneyError
from services.decisions.money.allocation import cumulative_share, split_by_weights


class TaxBasis(StrEnum):
    INCLUSIVE = "INCLUSIVE"  # prices include tax (EU, ID, SG ...)
    EXCLUSIVE = "EXCLUSIVE"  # tax is added on top of the price (US sales tax ...)


class Liable(StrEnum):
    SELLER = "SELLER"
    BUYER = "BUYER"
    CARRIER = "CARRIER"
    PLATFORM = "PLATFORM"


class RefundArithmeticError(MoneyError):
    """An order or return that cannot be refunded as given (with the reason)."""


@dataclass(frozen=True)
class OrderLine:
    line_id: str
    sku: str
    unit_price_minor: int
    quantity: int
    tax_minor: int = 0  # EXCLUSIVE basis: tax charged on the whole line
    category: str = ""

    @property
    def gross_minor(self) -> int:
        return self.unit_price_minor * self.quantity


@dataclass(frozen=True)
class Order:
    order_ref: str
    currency: str
    lines: tuple[OrderLine, ...]
    discount_minor: int = 0  # order-level discounts and vouchers, together
    shipping_fee_minor: int = 0
    tax_basis: TaxBasis = TaxBasis.INCLUSIVE
    tax_rate_bp: int = 0  # INCLUSIVE basis: the rate inside prices, for the receipt

    def __post_init__(self) -> None:
        if self.currency not in CURRENCY_EXPONENTS:
            raise RefundArithmeticError(f"unknown or unsupported currency {self.currency!r}")
        if not self.lines:
            raise RefundArithmeticError(f"order {self.order_ref} has no lines")
        ids = [line.line_id for line in self.lines]
        if len(set(ids)) != len(ids):
            raise RefundArithmeticError(f"order {self.order_ref} repeats a line id: {ids}")
        for line in self.lines:
            for name in ("unit_price_minor", "quantity", "tax_minor"):
                value = getattr(line, name)
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise RefundArithmeticError(
                        f"line {line.line_id}: {name} must be a non-negative integer, got {value!r}"
                    )
            if line.quantity == 0:
                raise RefundArithmeticError(f"line {line.line_id}: quantity must be positive")
        for name in ("discount_minor", "shipping_fee_minor", "tax_rate_bp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RefundArithmeticError(f"{name} must be a non-negative integer, got {value!r}")
        if self.discount_minor > self.goods_gross_minor:
            raise RefundArithmeticError(
                f"discounts ({self.discount_minor}) exceed the goods ({self.goods_gross_minor})"
            )
        if self.tax_basis == TaxBasis.INCLUSIVE and any(line.tax_minor for line in self.lines):
            raise RefundArithmeticError("tax_minor on a line needs the EXCLUSIVE tax basis")

    @property
    def goods_gross_minor(self) -> int:
        return sum(line.gross_minor for line in self.lines)

    @property
    def units(self) -> int:
        return sum(line.quantity for line in self.lines)

    @property
    def paid_minor(self) -> int:
        """What the buyer paid for the order."""
        tax = sum(line.tax_minor for line in self.lines)
        return self.goods_gross_minor - self.discount_minor + self.shipping_fee_minor + tax

    def line(self, line_id: str) -> OrderLine:
        for line in self.lines:
            if line.line_id == line_id:
                return line
        raise RefundArithmeticError(f"order {self.order_ref} has no line {line_id!r}")

    def discount_shares(self) -> dict[str, int]:
        shares = split_by_weights(self.discount_minor, [line.gross_minor for line in self.lines])
        return {line.line_id: share for line, share in zip(self.lines, shares, strict=True)}


def order_from_record(order_ref: str, record: Mapping[str, Any]) -> Order:
    """An order as the events and the explain format write it: currency, lines (line_id,
    sku, unit_price_minor, quantity, tax_minor), discount_minor, shipping_fee_minor,
    tax_basis, tax_rate_bp."""
    return Order(
        order_ref,
        record["currency"],
        tuple(
            OrderLine(
                line["line_id"],
                line["sku"],
                line["unit_price_minor"],
                line["quantity"],
                line.get("tax_minor", 0),
            )
            for line in record["lines"]
        ),
        record.get("discount_minor", 0),
        record.get("shipping_fee_minor", 0),
        TaxBasis(record.get("tax_basis", "INCLUSIVE")),
        record.get("tax_rate_bp", 0),
    )


@dataclass(frozen=True)
class OrderRefundHistory:
    """What earlier returns of the order took back (kept per order by the refund service)."""

    returned_units: Mapping[str, int] = field(default_factory=dict)
    shipping_refunded_units: int = 0
    refunded_minor: int = 0

    def to_record(self) -> dict[str, Any]:
        return {
            "returned_units": dict(sorted(self.returned_units.items())),
            "shipping_refunded_units": self.shipping_refunded_units,
            "refunded_minor": self.refunded_minor,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> OrderRefundHistory:
        if not record:
            return cls()
        return cls(
            dict(record.get("returned_units", {})),
            int(record.get("shipping_refunded_units", 0)),
            int(record.get("refunded_minor", 0)),
        )


Ranges = tuple[tuple[int, int], ...]  # half-open unit positions [start, end)


@dataclass(frozen=True)
class UnitRanges:
    """The unit positions a return takes: per order line, and of the order's units for the
    shipping fee (only when the shipping fee is refunded)."""

    lines: Mapping[str, Ranges]
    shipping: Ranges = ()


def unit_count(ranges: Ranges) -> int:
    return sum(end - start for start, end in ranges)


def share_of_units(amount: int, ranges: Ranges, of: int) -> int:
    return sum(cumulative_share(amount, start, end, of) for start, end in ranges)


def check_ranges(what: str, ranges: Ranges, units: int, of: int) -> None:
    ordered = sorted(ranges)
    for (start, end), following in zip(ordered, [*ordered[1:], None], strict=True):
        if not 0 <= start < end <= of:
            raise RefundArithmeticError(f"{what}: unit positions {start}..{end} outside 0..{of}")
        if following is not None and following[0] < end:
            raise RefundArithmeticError(f"{what}: unit positions overlap")
    if unit_count(ranges) != units:
        raise RefundArithmeticError(
            f"{what}: positions for {unit_count(ranges)} units, not {units}"
        )
