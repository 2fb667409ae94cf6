"""A return's refund decision after inspection, from the policy it was accepted under (pure).

One chain, used by `boomerang policy explain` and by the saga when it asks for the refund:
liability (claimed reason, carrier's damage note, inspection) → the fees the policy puts on
the liable party → the refund per line (integer minor units, largest remainder) → where the
money goes. Every step adds the rules that fired to the decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.decisions.money import Money
from services.decisions.policy.liability import (
    Grade,
    InspectionFacts,
    LiabilityDecision,
    ReasonFamily,
    RefundOutcome,
    RuleFired,
    decide_liability,
    provisional_liability,
)
from services.decisions.policy.policy_rules import (
    EffectivePolicy,
    RefundDestination,
    fee_terms,
    liability_terms,
    refund_destination,
)
from services.decisions.refunds.order_model import Order, OrderRefundHistory
from services.decisions.refunds.refund_arithmetic import (
    FeeTerms,
    RefundCalculation,
    calculate_refund,
)


@dataclass(frozen=True)
class RefundDecision:
    liability: LiabilityDecision
    provisional: bool  # no inspection yet: liability as claimed
    rules_fired: tuple[RuleFired, ...]
    calculation: RefundCalculation | None  # None: inspection rejected the return
    destination: RefundDestination | None
    fees: FeeTerms = field(default_factory=FeeTerms)  # what the policy charged the liable party

    @property
    def rejected(self) -> bool:
        return self.calculation is None

    def liability_record(self) -> dict[str, Any]:
        return {
            "liable": str(self.liability.liable),
            "refund": str(self.liability.refund),
            "family_after_inspection": str(self.liability.family),
            "overturned": self.liability.overturned,
            "provisional": self.provisional,
        }

    def refund_record(self, order: Order) -> dict[str, Any] | None:
        calculation = self.calculation
        if calculation is None:
            return None
        return {
            "currency": order.currency,
            "lines": [line.to_record() for line in calculation.lines],
            "total_minor": calculation.total_minor,
            "total": str(Money(calculation.total_minor, order.currency)),
            "order_paid_minor": order.paid_minor,
            "refunded_for_order_after_this_minor": calculation.history_after.refunded_minor,
            "notes": list(calculation.notes),
        }

    def destination_record(self, paid_with: str) -> dict[str, Any] | None:
        destination = self.destination
        if destination is None:
            return None
        return {
            "method": destination.method,
            "paid_with": paid_with,
            "needs_bank_account": destination.needs_bank_account,
            "deadline_days": destination.deadline_days,
        }


def decide_refund(
    policy: EffectivePolicy,
    order: Order,
    family: ReasonFamily,
    returning: Mapping[str, int],
    paid_with: str,
    *,
    pickup_damage_noted: bool = False,
    inspection: InspectionFacts | None = None,
    history: OrderRefundHistory | None = None,
    store_credit_chosen: bool = False,
) -> RefundDecision:
    """`returning`: order line id → units returned. Raises RefundArithmeticError when the
    lines do not fit the order (more units than bought, or than are left to return)."""
    if inspection is None:
        liability = provisional_liability(family)
    else:
        liability = decide_liability(
            family, pickup_damage_noted, inspection, liability_terms(policy)
        )
    fired = list(liability.rules_fired)
    if liability.refund == RefundOutcome.NONE:
        return RefundDecision(liability, inspection is None, tuple(fired), None, None)
    grade: Grade | None = inspection.grade if inspection is not None else None
    fees, fee_rules = fee_terms(policy, liability, grade)
    fired += fee_rules
    calculation = calculate_refund(
        order, dict(returning), liability.liable, fees, history or OrderRefundHistory()
    )
    destination = refund_destination(policy, paid_with, store_credit_chosen)
    fired.append(destination.rule)
    return RefundDecision(
        liability, inspection is None, tuple(fired), calculation, destination, fees
    )
