"""What the saga asks the refund service to pay, decided after inspection (pure).

The return carries the effective policy it was accepted under and the order as paid; the
inspection and the carrier's damage note decide liability; `decide_refund` does the rest.
One liability per return: the worst grade among the inspected items decides it.
A return accepted before policies travelled with it (no `policy`) refunds unit price ×
quantity per returned line, as it did then.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.decisions.money import Money
from services.decisions.policy.liability import Grade, InspectionFacts, ReasonFamily
from services.decisions.policy.policy_rules import EffectivePolicy
from services.decisions.policy.return_decisions import RefundDecision, decide_refund
from services.decisions.refunds.order_model import Order, order_from_record
from services.decisions.refunds.refund_amount import refund_for_lines

GRADE_ORDER = (Grade.A, Grade.B, Grade.C, Grade.D)


def line_id_of(line: Mapping[str, Any]) -> str:
    return line.get("order_line_id") or line["sku"]


def order_of(request: Mapping[str, Any]) -> Order:
    """The order as paid; without a snapshot, the returned lines are the whole order."""
    return order_from_record(request["order_ref"], order_record_of(request))


def order_record_of(request: Mapping[str, Any]) -> dict[str, Any]:
    """The order as an OrderSnapshot record: the request's snapshot, or else one built from
    the returned lines alone (units bought at their unit price, no discount, no shipping)."""
    snapshot = request.get("order")
    if snapshot:
        return dict(snapshot)
    lines: dict[str, dict[str, Any]] = {}
    for line in request["lines"]:
        lines.setdefault(
            line_id_of(line),
            {
                "line_id": line_id_of(line),
                "sku": line["sku"],
                "unit_price_minor": line["unit_price"]["amount_minor"],
                "quantity": line["quantity_bought"],
                "tax_minor": 0,
            },
        )
    return {
        "currency": request["lines"][0]["unit_price"]["currency"],
        "lines": list(lines.values()),
        "discount_minor": 0,
        "shipping_fee_minor": 0,
        "tax_basis": "INCLUSIVE",
        "tax_rate_bp": 0,
    }


def returning_units(request: Mapping[str, Any]) -> dict[str, int]:
    units: dict[str, int] = {}
    for line in request["lines"]:
        key = line_id_of(line)
        units[key] = units.get(key, 0) + line["quantity_returned"]
    return units


def inspection_facts(items: Sequence[Mapping[str, Any]]) -> InspectionFacts:
    """Items that do not match or weigh far too little reject the return before this.
    A grade the reader did not know (UNKNOWN, from a newer writer) counts as B."""
    grades = [Grade(item["grade"]) for item in items if item["grade"] in Grade.__members__]
    worst = max(grades or [Grade.B], key=GRADE_ORDER.index)
    return InspectionFacts(
        worst,
        all(item["matches_order"] for item in items),
        packaging_damaged_on_arrival=any(item.get("packaging_damaged") for item in items),
    )


def refund_lines(breakdown: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The refund command's lines (sku, quantity, amount) from the breakdown per line."""
    return [
        {
            "sku": line["sku"],
            "quantity": line["quantity"],
            "amount": Money(line["amount_minor"], line["currency"]).to_record(),
        }
        for line in breakdown
    ]


@dataclass(frozen=True)
class RefundPlan:
    decision: RefundDecision | None  # None: a return without a policy snapshot
    refund: dict[str, Any]  # the saga's `refund` fields: amount, method, lines, breakdown…
    rules: tuple[dict[str, Any], ...]

    @property
    def rejection(self) -> str:
        if self.decision is None or not self.decision.rejected:
            return ""
        return self.decision.liability.rules_fired[-1].effect


def plan_refund(
    request: Mapping[str, Any],
    policy_record: Mapping[str, Any],
    items: Sequence[Mapping[str, Any]],
    carrier_noted_damage: bool,
) -> RefundPlan:
    """Raises RefundArithmeticError when the returned lines do not fit the order."""
    if not policy_record:
        breakdown = refund_for_lines(request["lines"])
        return RefundPlan(
            None,
            {
                "amount": breakdown.total.to_record(),
                "method": request["payment_method"],
                "lines": breakdown.line_records(),
            },
            (),
        )
    policy = EffectivePolicy.from_record(dict(policy_record))
    order = order_of(request)
    decision = decide_refund(
        policy,
        order,
        ReasonFamily(request["reason_family"]),
        returning_units(request),
        request["payment_method"],
        pickup_damage_noted=carrier_noted_damage,
        inspection=inspection_facts(items),
        store_credit_chosen=bool(request.get("store_credit_chosen")),
    )
    rules = tuple(rule.to_record() for rule in decision.rules_fired)
    calculation = decision.calculation
    if calculation is None or decision.destination is None:
        return RefundPlan(decision, {}, rules)
    breakdown = [{**line.to_record(), "currency": order.currency} for line in calculation.lines]
    refund = {
        "amount": Money(calculation.total_minor, order.currency).to_record(),
        "method": decision.destination.method,
        "deadline_days": decision.destination.deadline_days,
        "paid_with": request["payment_method"],
        "lines": refund_lines(breakdown),
        "breakdown": breakdown,
        "liable": str(decision.liability.liable),
        "liability": decision.liability_record(),
        "policy_version": policy.version,
        "notes": list(calculation.notes),
        "order_paid_minor": order.paid_minor,
        # what the order refund ledger needs to work the refund out again after the
        # order's other live returns
        "fee_terms": dict(decision.fees.__dict__),
        "returning": [{"line_id": k, "units": v} for k, v in returning_units(request).items()],
    }
    return RefundPlan(decision, refund, rules)
