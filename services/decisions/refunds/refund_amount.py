"""How much a return refunds (pure). For now: unit price × returned quantity per line.

The rules engine (policies, liability, discounts, fees) replaces this later; its callers
only rely on `RefundBreakdown`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.decisions.money import Money, MoneyError


@dataclass(frozen=True)
class RefundLineAmount:
    sku: str
    quantity: int
    amount: Money


@dataclass(frozen=True)
class RefundBreakdown:
    lines: tuple[RefundLineAmount, ...]
    total: Money

    def line_records(self) -> list[dict[str, Any]]:
        return [
            {"sku": line.sku, "quantity": line.quantity, "amount": line.amount.to_record()}
            for line in self.lines
        ]


def refund_for_lines(return_lines: Sequence[dict[str, Any]]) -> RefundBreakdown:
    """`return_lines` as in ReturnRequested.lines (sku, quantity_returned, unit_price)."""
    if not return_lines:
        raise MoneyError("a refund needs at least one line")
    lines = []
    for line in return_lines:
        unit = Money.from_record(line["unit_price"])
        lines.append(
            RefundLineAmount(
                line["sku"], line["quantity_returned"], unit.times(line["quantity_returned"])
            )
        )
    total = Money.zero(lines[0].amount.currency)
    for line in lines:
        total = total + line.amount
    return RefundBreakdown(tuple(lines), total)


def check_refund_command(amount: dict[str, Any], lines: Sequence[dict[str, Any]]) -> Money:
    """The refund service's own check of a RefundRequested: lines add up to the amount."""
    total = Money.from_record(amount)
    if total.amount_minor <= 0:
        raise MoneyError(f"refund amount must be positive, got {total}")
    summed = Money.zero(total.currency)
    for line in lines:
        summed = summed + Money.from_record(line["amount"])
    if summed != total:
        raise MoneyError(f"lines add up to {summed}, the command says {total}")
    return total
