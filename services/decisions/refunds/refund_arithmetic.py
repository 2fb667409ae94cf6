"""What a return refunds, line by line and component by component (pure).

Inputs are the order as it was paid (lines, order-level discounts and vouchers, the shipping
fee, tax on the price basis the market uses), what earlier returns of the same order already
refunded, the lines being returned now, who is liable and the fee terms of the policy the
return was decided under. Everything is integer minor units of one currency.

Per line:  goods   = unit price × quantity − the line's share of order-level discounts
           + tax   (EXCLUSIVE basis: the tax charged on the goods refunded; INCLUSIVE:
                    inside the prices, never added twice — `tax_included` shows the tax
                    inside what the line finally refunds, for the receipt)
           + shipping       (the original shipping fee, when seller, platform or carrier
                             is liable)
           − return_shipping, restocking_fee, damage_deduction   (when the buyer is liable)

How nothing is lost or created:
- order-level discounts are split over all lines of the order once, by largest remainder
  over the lines' gross values, so every return of the order sees the same net line values;
- a partial return takes `cumulative_share(net, before, after, bought)` of each line: over
  any sequence of returns that ends with every unit back, the refunds add up to exactly what
  was paid for the line, and never more at any point;
- the shipping fee is shared the same way over the order's units;
- the order refund ledger may hand a return the exact unit positions it takes (`UnitRanges`:
  the lowest positions no live return holds, so a released return's units are taken again
  at the same value); the shares of disjoint positions covering every unit still add up to
  exactly the amount;
- fees are split over the returned lines by largest remainder and capped at what the line
  refunds, so no line (and no refund) goes below zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from services.decisions.money.allocation import split_by_weights
from services.decisions.refunds.order_model import (
    Liable,
    Order,
    OrderRefundHistory,
    Ranges,
    RefundArithmeticError,
    TaxBasis,
    UnitRanges,
    check_ranges,
    share_of_units,
)

BASIS_POINTS = 10_000


@dataclass(frozen=True)
class FeeTerms:
    """The policy's fees for a buyer-liable return (all zero when nobody charges any)."""

    return_shipping_fee_minor: int = 0  # per return, when the buyer pays return shipping
    restocking_fee_bp: int = 0  # of the line's goods
    restocking_fee_flat_minor: int = 0  # per returned unit
    damage_deduction_bp: int = 0  # item damaged by the buyer, policy says reduce

    def __post_init__(self) -> None:
        for name in (
            "return_shipping_fee_minor",
            "restocking_fee_bp",
            "restocking_fee_flat_minor",
            "damage_deduction_bp",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RefundArithmeticError(f"{name} must be a non-negative integer, got {value!r}")
        for name in ("restocking_fee_bp", "damage_deduction_bp"):
            if getattr(self, name) > BASIS_POINTS:
                raise RefundArithmeticError(f"{name} is above 100 %")


@dataclass(frozen=True)
class LineRefund:
    line_id: str
    sku: str
    quantity: int
    unit_price_minor: int
    gross_minor: int  # unit price × quantity
    discount_minor: int  # this return's share of order-level discounts and vouchers
    goods_minor: int  # gross − discount
    tax_minor: int  # EXCLUSIVE basis: tax refunded on top (none on goods kept back as fees)
    tax_included_minor: int  # INCLUSIVE basis: tax inside amount_minor (for the receipt)
    shipping_minor: int  # original shipping fee refunded
    return_shipping_minor: int  # deducted
    restocking_fee_minor: int  # deducted
    damage_deduction_minor: int  # deducted
    amount_minor: int  # what this line refunds

    def to_record(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class RefundCalculation:
    order_ref: str
    currency: str
    liable: Liable
    lines: tuple[LineRefund, ...]
    total_minor: int
    history_after: OrderRefundHistory
    notes: tuple[str, ...] = ()

    def to_record(self) -> dict[str, Any]:
        return {
            "order_ref": self.order_ref,
            "currency": self.currency,
            "liable": str(self.liable),
            "lines": [line.to_record() for line in self.lines],
            "total_minor": self.total_minor,
            "history_after": self.history_after.to_record(),
            "notes": list(self.notes),
        }


def calculate_refund(
    order: Order,
    returning: Mapping[str, int],
    liable: Liable,
    fees: FeeTerms = FeeTerms(),
    history: OrderRefundHistory = OrderRefundHistory(),
    taken: UnitRanges | None = None,
) -> RefundCalculation:
    """`returning`: order line id → units returned now. `taken`: the unit positions this
    return takes (default: the next ones after `history`)."""
    if not returning:
        raise RefundArithmeticError("a return needs at least one line")
    for line_id, units in returning.items():
        line = order.line(line_id)
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise RefundArithmeticError(f"line {line_id}: units must be a positive integer")
        before = history.returned_units.get(line_id, 0)
        if before + units > line.quantity:
            raise RefundArithmeticError(
                f"line {line_id}: returning {units} after {before} of {line.quantity} bought"
            )
    buyer_pays = liable == Liable.BUYER
    discounts = order.discount_shares()
    notes: list[str] = []

    returned = [order.line(line_id) for line_id in sorted(returning, key=_line_order(order))]
    lines: list[LineRefund] = []
    for line in returned:
        units = returning[line.line_id]
        before = history.returned_units.get(line.line_id, 0)
        if taken is None:
            ranges: Ranges = ((before, before + units),)
        else:
            ranges = tuple(taken.lines.get(line.line_id, ()))
            check_ranges(f"line {line.line_id}", ranges, units, line.quantity)
        net = line.gross_minor - discounts[line.line_id]
        goods = share_of_units(net, ranges, line.quantity)
        gross = share_of_units(line.gross_minor, ranges, line.quantity)
        tax = share_of_units(line.tax_minor, ranges, line.quantity)
        lines.append(
            LineRefund(
                line.line_id,
                line.sku,
                units,
                line.unit_price_minor,
                gross,
                gross - goods,
                goods,
                tax,
                0,  # tax_included: worked out from the final amount below
                0,
                0,
                0,
                0,
                goods + tax,
            )
        )

    units_now = sum(returning.values())
    shipping_units_after = history.shipping_refunded_units
    if not buyer_pays and order.shipping_fee_minor:
        shipping_units_after += units_now
        if taken is None:
            shipping_ranges: Ranges = ((history.shipping_refunded_units, shipping_units_after),)
        else:
            shipping_ranges = tuple(taken.shipping)
            check_ranges("shipping", shipping_ranges, units_now, order.units)
        shipping = share_of_units(order.shipping_fee_minor, shipping_ranges, order.units)
        shares = split_by_weights(shipping, [line.quantity for line in lines])
        lines = [
            replace(line, shipping_minor=share, amount_minor=line.amount_minor + share)
            for line, share in zip(lines, shares, strict=True)
        ]
    if buyer_pays:
        lines = _deduct_fees(lines, fees, notes)
    if order.tax_basis == TaxBasis.INCLUSIVE and order.tax_rate_bp:
        rate = order.tax_rate_bp  # the tax inside what the line refunds, for the receipt
        lines = [
            replace(line, tax_included_minor=line.amount_minor * rate // (BASIS_POINTS + rate))
            for line in lines
        ]

    total = sum(line.amount_minor for line in lines)
    returned_units = dict(history.returned_units)
    for line_id, units in returning.items():
        returned_units[line_id] = returned_units.get(line_id, 0) + units
    history_after = OrderRefundHistory(
        returned_units, shipping_units_after, history.refunded_minor + total
    )
    if history_after.refunded_minor > order.paid_minor:  # cannot happen; a guard, not a rule
        raise RefundArithmeticError(
            f"refunds of {order.order_ref} would reach {history_after.refunded_minor}, "
            f"more than the {order.paid_minor} paid"
        )
    return RefundCalculation(
        order.order_ref, order.currency, liable, tuple(lines), total, history_after, tuple(notes)
    )


def _deduct_fees(lines: list[LineRefund], fees: FeeTerms, notes: list[str]) -> list[LineRefund]:
    """Damage deduction and restocking fee keep back part of the goods (capped at the goods);
    on the EXCLUSIVE basis the tax on the part kept back is not refunded either (rounded
    down). Then return shipping, capped at what is left."""
    out = []
    for line in lines:
        goods = line.goods_minor
        damage = goods * fees.damage_deduction_bp // BASIS_POINTS
        restocking = goods * fees.restocking_fee_bp // BASIS_POINTS
        restocking += fees.restocking_fee_flat_minor * line.quantity
        restocking = min(goods - damage, restocking)
        goods_back = goods - damage - restocking
        tax_back = line.tax_minor * goods_back // goods if goods else line.tax_minor
        out.append(
            replace(
                line,
                tax_minor=tax_back,
                damage_deduction_minor=damage,
                restocking_fee_minor=restocking,
                amount_minor=goods_back + tax_back + line.shipping_minor,
            )
        )
    fee = fees.return_shipping_fee_minor
    refundable = sum(line.amount_minor for line in out)
    if fee > refundable:
        notes.append(f"return shipping fee {fee} capped at what the return refunds ({refundable})")
        fee = refundable
    if fee:
        shares = _capped_split(fee, [line.amount_minor for line in out])
        out = [
            replace(line, return_shipping_minor=share, amount_minor=line.amount_minor - share)
            for line, share in zip(out, shares, strict=True)
        ]
    return out


def _capped_split(amount: int, caps: Sequence[int]) -> list[int]:
    """Split `amount` (≤ sum of caps) by the caps as weights; a share never exceeds its cap."""
    if sum(caps) == 0:
        return [0] * len(caps)
    shares = split_by_weights(amount, caps)
    # largest remainder over the caps themselves never exceeds a cap when amount ≤ sum(caps)
    assert all(share <= cap for share, cap in zip(shares, caps, strict=True))
    return shares


def _line_order(order: Order):
    position = {line.line_id: index for index, line in enumerate(order.lines)}
    return lambda line_id: position.get(line_id, len(position))
