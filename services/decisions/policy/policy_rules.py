"""The return policy as decisions (pure): which layers apply, is the request acceptable,
which fees apply once liability is known, and where the money goes.

Every decision carries the rules that fired (rule id, the facts it looked at, its effect),
so a support agent can explain it to a buyer and to a seller.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from services.decisions.policy.liability import (
    BuyerDamage,
    Grade,
    LiabilityDecision,
    LiabilityTerms,
    ReasonFamily,
    RefundOutcome,
    RuleFired,
)
from services.decisions.policy.policy_layers import PolicyLayer, PolicySet
from services.decisions.refunds.order_model import Liable
from services.decisions.refunds.refund_arithmetic import FeeTerms

DAY_MS = 24 * 3600 * 1000


class PolicyLookupError(LookupError):
    """No policy covers the return (an unknown market)."""


@dataclass(frozen=True)
class EffectivePolicy:
    """The merged layers for one return; what the return keeps for its whole life."""

    version: str  # the layers used, e.g. ID/market:default@v3+ID/category:electronics@v2
    market: str
    category: str
    seller: str
    currency: str
    rules: dict[str, Any]
    provenance: dict[str, str]  # top-level rule → the layer that set it last

    def to_record(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "market": self.market,
            "category": self.category,
            "seller": self.seller,
            "currency": self.currency,
            "rules": self.rules,
            "provenance": self.provenance,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> EffectivePolicy:
        return cls(
            record["version"],
            record["market"],
            record["category"],
            record["seller"],
            record["currency"],
            record["rules"],
            record["provenance"],
        )

    def rule(self, name: str, facts: dict[str, Any], effect: str) -> RuleFired:
        source = self.provenance.get(name, "built-in default")
        return RuleFired(f"policy.{name}", {**facts, "set_by": source}, effect)


def policy_digest(policy_json: str) -> str:
    """The name of an effective policy as JSON (ReturnAccepted.policy_digest, the key of its
    snapshot on boomerang.policy.snapshots): SHA-256 (hex) of its UTF-8 bytes."""
    return hashlib.sha256(policy_json.encode()).hexdigest()


def resolve_policy(
    policies: PolicySet, market: str, category: str, seller: str, buyer: str | None = None
) -> EffectivePolicy:
    """Market default, then the category in that market, then the seller's override, then
    the buyer's (a layer risk generates for a buyer whose return was held or declined)."""
    base = policies.market_layer(market)
    if base is None:
        raise PolicyLookupError(f"no return policy for market {market!r}")
    layers: list[PolicyLayer] = [base]
    for layer in (
        policies.category_layer(market, category),
        policies.seller_layer(market, seller),
        policies.buyer_layer(market, buyer) if buyer else None,
    ):
        if layer is not None:
            layers.append(layer)
    rules: dict[str, Any] = {}
    provenance: dict[str, str] = {}
    for layer in layers:
        for key, value in layer.rules.items():
            rules[key] = _merged(rules.get(key), value)
            provenance[key] = layer.label
    assert base.currency is not None  # a market layer always has one (checked on load)
    return EffectivePolicy(
        "+".join(layer.label for layer in layers),
        market,
        category,
        seller,
        base.currency,
        rules,
        provenance,
    )


def _merged(earlier: Any, later: Any) -> Any:
    if isinstance(earlier, dict) and isinstance(later, dict):
        merged = dict(earlier)
        for key, value in later.items():
            merged[key] = _merged(earlier.get(key), value)
        return merged
    return later


# ------------------------------------------------------------------ the request


@dataclass(frozen=True)
class RequestFacts:
    category: str
    reason_code: str
    delivered_at_ms: int
    requested_at_ms: int
    photos: int = 0


@dataclass(frozen=True)
class RequestDecision:
    accepted: bool
    policy_version: str
    family: ReasonFamily | None
    rules_fired: tuple[RuleFired, ...]
    rejection_code: str = ""
    detail: str = ""


def decide_request(policy: EffectivePolicy, facts: RequestFacts) -> RequestDecision:
    rules = policy.rules
    fired: list[RuleFired] = []

    def reject(code: str, rule: RuleFired) -> RequestDecision:
        return RequestDecision(False, policy.version, None, (*fired, rule), code, rule.effect)

    if rules.get("returnable", True) is False:
        return reject(
            "NON_RETURNABLE_CATEGORY",
            policy.rule(
                "returnable",
                {"category": facts.category},
                f"category {facts.category!r} cannot be returned",
            ),
        )
    fired.append(policy.rule("returnable", {"category": facts.category}, "returnable"))

    reason = rules["reasons"].get(facts.reason_code)
    if reason is None or reason.get("allowed", True) is False:
        return reject(
            "REASON_NOT_ALLOWED",
            policy.rule(
                "reasons",
                {"reason_code": facts.reason_code},
                f"reason {facts.reason_code!r} is not accepted here",
            ),
        )
    family = ReasonFamily(reason["family"])
    fired.append(
        policy.rule("reasons", {"reason_code": facts.reason_code}, f"reason family {family}")
    )

    window = rules["return_window_days"]
    if facts.delivered_at_ms > facts.requested_at_ms + DAY_MS:
        return reject(
            "NOT_DELIVERED",
            policy.rule(
                "return_window_days",
                {"delivered_at": facts.delivered_at_ms, "requested_at": facts.requested_at_ms},
                "delivered_at is in the future",
            ),
        )
    age_days = max(0, facts.requested_at_ms - facts.delivered_at_ms) // DAY_MS
    window_facts = {"days_since_delivery": age_days, "window_days": window}
    if age_days > window:
        return reject(
            "OUTSIDE_RETURN_WINDOW",
            policy.rule(
                "return_window_days",
                window_facts,
                f"delivered {age_days} days ago; the window is {window} days",
            ),
        )
    fired.append(policy.rule("return_window_days", window_facts, "inside the return window"))

    needed = int(reason.get("photos_required", 0))
    if facts.photos < needed:
        return reject(
            "EVIDENCE_REQUIRED",
            policy.rule(
                "reasons",
                {"reason_code": facts.reason_code, "photos": facts.photos, "needed": needed},
                f"{facts.reason_code} needs {needed} photo(s), got {facts.photos}",
            ),
        )
    if needed:
        fired.append(
            policy.rule(
                "reasons",
                {"photos": facts.photos, "needed": needed},
                "evidence present",
            )
        )
    return RequestDecision(True, policy.version, family, tuple(fired))


# ------------------------------------------------------------------ after inspection


def liability_terms(policy: EffectivePolicy) -> LiabilityTerms:
    return LiabilityTerms(
        BuyerDamage(policy.rules["buyer_damage"]),
        bool(policy.rules.get("overturn_fault_claim_on_grade_a", True)),
    )


def fee_terms(
    policy: EffectivePolicy, liability: LiabilityDecision, grade: Grade | None
) -> tuple[FeeTerms, tuple[RuleFired, ...]]:
    """The fees the buyer bears, with the rules that set them (none unless the buyer is liable)."""
    rules = policy.rules
    shipping = rules["return_shipping"]
    payer = Liable(shipping.get("payer", {}).get(str(liability.liable), str(liability.liable)))
    fired: list[RuleFired] = []
    return_shipping = 0
    if liability.liable == Liable.BUYER and payer == Liable.BUYER:
        return_shipping = int(shipping.get("fee_minor", 0))
    fired.append(
        policy.rule(
            "return_shipping",
            {"liable": str(liability.liable), "payer": str(payer)},
            f"return shipping paid by {payer}"
            + (f": {return_shipping} deducted" if return_shipping else ""),
        )
    )
    restocking_bp = restocking_flat = 0
    if liability.liable == Liable.BUYER and grade is not None:
        fee = rules.get("restocking_fee", {}).get(str(grade), {})
        restocking_bp = int(fee.get("percent_bp", 0))
        restocking_flat = int(fee.get("flat_minor_per_unit", 0))
        if restocking_bp or restocking_flat:
            fired.append(
                policy.rule(
                    "restocking_fee",
                    {"grade": str(grade), "percent_bp": restocking_bp, "flat": restocking_flat},
                    "restocking fee deducted",
                )
            )
    damage_bp = 0
    if liability.refund == RefundOutcome.REDUCED:
        damage_bp = int(rules.get("damage_deduction_bp", 0))
        fired.append(
            policy.rule(
                "damage_deduction_bp",
                {"damage_deduction_bp": damage_bp},
                f"refund reduced by {damage_bp / 100:g} % for damage by the buyer",
            )
        )
    return FeeTerms(return_shipping, restocking_bp, restocking_flat, damage_bp), tuple(fired)


# ------------------------------------------------------------------ where the money goes

NEEDS_BANK_ACCOUNT = frozenset({"BANK_TRANSFER", "VIRTUAL_ACCOUNT"})


@dataclass(frozen=True)
class RefundDestination:
    method: str  # CARD, EWALLET, BNPL, DIRECT_DEBIT, BANK_TRANSFER, STORE_CREDIT
    needs_bank_account: bool
    deadline_days: int | None  # the money reaches the buyer within this many days (None: unset)
    rule: RuleFired


def refund_destination(
    policy: EffectivePolicy, paid_with: str, store_credit_chosen: bool = False
) -> RefundDestination:
    rules = policy.rules
    facts = {"paid_with": paid_with, "store_credit_chosen": store_credit_chosen}
    if store_credit_chosen:
        method, why = "STORE_CREDIT", "the buyer chose store credit"
    elif paid_with == "COD":
        method = rules["cod_refund_to"]
        why = f"cash on delivery is refunded to {method} (policy)"
    elif paid_with in NEEDS_BANK_ACCOUNT:
        method, why = "BANK_TRANSFER", "refunded by bank transfer to the buyer's account"
    else:
        method, why = paid_with, f"back to the original {paid_with}"
    # every market file names every method (checked on load); a snapshot from before may not
    deadline = rules["refund_deadline_days"].get(method)
    return RefundDestination(
        method,
        method == "BANK_TRANSFER",
        deadline,
        policy.rule("refund_deadline_days", {**facts, "deadline_days": deadline}, why),
    )
