"""Who is liable for a return, and what the buyer gets back (pure).

Facts: the reason family the buyer claimed, whether the carrier noted damage when it
collected, and the inspection (grade, does the item match what was shipped, is the weight
plausible, was the outer packaging damaged on arrival). Policy: what happens to an item the
buyer damaged (reduce the refund or reject it), and whether a grade-A item can overturn a
fault claim. The full table, cell by cell, is services/decisions/policy/liability_table.md; the test
checks every cell of it against this function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from services.decisions.refunds.order_model import Liable


class ReasonFamily(StrEnum):
    SELLER_FAULT = "SELLER_FAULT"  # defective, damaged on arrival, wrong item, not as described
    PLATFORM_FAULT = "PLATFORM_FAULT"  # late delivery, lost in fulfilment, platform listing error
    BUYER_REMORSE = "BUYER_REMORSE"  # changed mind, no longer needed, wrong size ordered


class Grade(StrEnum):
    A = "A"  # as new
    B = "B"  # opened, no defect
    C = "C"  # damaged
    D = "D"  # unusable


class BuyerDamage(StrEnum):
    """Policy: what a remorse return the buyer damaged gets."""

    REDUCE = "REDUCE"  # refund minus the policy's damage deduction
    REJECT = "REJECT"  # no refund; the item goes back to the buyer or to quarantine


class RefundOutcome(StrEnum):
    FULL = "FULL"
    REDUCED = "REDUCED"
    NONE = "NONE"


DAMAGED = frozenset({Grade.C, Grade.D})


@dataclass(frozen=True)
class InspectionFacts:
    grade: Grade
    matches_order: bool = True
    weight_plausible: bool = True
    packaging_damaged_on_arrival: bool = False


@dataclass(frozen=True)
class LiabilityTerms:
    buyer_damage: BuyerDamage = BuyerDamage.REDUCE
    overturn_fault_claim_on_grade_a: bool = True


@dataclass(frozen=True)
class RuleFired:
    rule_id: str
    facts: dict[str, Any]
    effect: str

    def to_record(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "facts": self.facts, "effect": self.effect}


@dataclass(frozen=True)
class LiabilityDecision:
    liable: Liable
    refund: RefundOutcome
    family: ReasonFamily  # after any overturn
    overturned: bool
    rules_fired: tuple[RuleFired, ...] = field(default=())

    @property
    def rejected(self) -> bool:
        return self.refund == RefundOutcome.NONE


FAMILY_PARTY = {
    ReasonFamily.SELLER_FAULT: Liable.SELLER,
    ReasonFamily.PLATFORM_FAULT: Liable.PLATFORM,
    ReasonFamily.BUYER_REMORSE: Liable.BUYER,
}


def provisional_liability(claimed: ReasonFamily) -> LiabilityDecision:
    """Before inspection: the claim stands."""
    rule = RuleFired(
        "liability.claimed",
        {"claimed_family": str(claimed)},
        f"{FAMILY_PARTY[claimed]} liable until inspection",
    )
    return LiabilityDecision(FAMILY_PARTY[claimed], RefundOutcome.FULL, claimed, False, (rule,))


def decide_liability(
    claimed: ReasonFamily,
    pickup_damage_noted: bool,
    inspection: InspectionFacts,
    terms: LiabilityTerms = LiabilityTerms(),
) -> LiabilityDecision:
    facts = {
        "claimed_family": str(claimed),
        "grade": str(inspection.grade),
        "matches_order": inspection.matches_order,
        "weight_plausible": inspection.weight_plausible,
        "packaging_damaged_on_arrival": inspection.packaging_damaged_on_arrival,
        "pickup_damage_noted": pickup_damage_noted,
    }

    def decided(
        rule_id: str, liable: Liable, refund: RefundOutcome, family: ReasonFamily, effect: str
    ) -> LiabilityDecision:
        rule = RuleFired(rule_id, facts, effect)
        return LiabilityDecision(liable, refund, family, family != claimed, (rule,))

    if not inspection.matches_order or not inspection.weight_plausible:
        return decided(
            "liability.mismatch",
            Liable.BUYER,
            RefundOutcome.NONE,
            ReasonFamily.BUYER_REMORSE,
            "item does not match what was shipped (or the box is too light): no refund",
        )
    damaged = inspection.grade in DAMAGED
    if damaged and inspection.packaging_damaged_on_arrival and not pickup_damage_noted:
        return decided(
            "liability.transit_damage",
            Liable.CARRIER,
            RefundOutcome.FULL,
            claimed,
            "damaged in transit (sound at pickup, packaging damaged on arrival): carrier pays",
        )
    if claimed != ReasonFamily.BUYER_REMORSE:
        if inspection.grade == Grade.A and terms.overturn_fault_claim_on_grade_a:
            return decided(
                "liability.fault_claim_overturned",
                Liable.BUYER,
                RefundOutcome.FULL,
                ReasonFamily.BUYER_REMORSE,
                "claimed a fault but the item is as new: treated as buyer remorse",
            )
        return decided(
            "liability.fault_claim_upheld",
            FAMILY_PARTY[claimed],
            RefundOutcome.FULL,
            claimed,
            f"fault claim stands: {FAMILY_PARTY[claimed]} pays",
        )
    if not damaged:
        return decided(
            "liability.remorse",
            Liable.BUYER,
            RefundOutcome.FULL,
            claimed,
            "buyer remorse, item in resellable condition: buyer bears the fees",
        )
    if terms.buyer_damage == BuyerDamage.REJECT:
        return decided(
            "liability.buyer_damage_rejected",
            Liable.BUYER,
            RefundOutcome.NONE,
            claimed,
            "buyer remorse, item damaged by the buyer: policy rejects the refund",
        )
    return decided(
        "liability.buyer_damage_reduced",
        Liable.BUYER,
        RefundOutcome.REDUCED,
        claimed,
        "buyer remorse, item damaged by the buyer: refund reduced by the damage deduction",
    )
