"""The risk step's decision on one return (pure): its features from the windows of its
buyer, seller and pickup address and from the inspection at hand (the scanned serials
against those its order shipped), the live rule set's decision, a shadow set's beside it
(recorded, never acted on), and a review case when a person must look.

What it reads are the fields of a `RiskCheckRequested`; what it gives is the body of the
`RiskDecided` answer and the case, if any.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from services.decisions.risk.count_records import ORDER_SUBJECT, Increment, keys_read, merged
from services.decisions.risk.return_features import (
    HORIZON_DAYS,
    ItemFacts,
    counted_inspection,
    item_facts,
    return_features,
)
from services.decisions.risk.review_cases import ReviewCase, open_case
from services.decisions.risk.rolling_counts import RollingCounts
from services.decisions.risk.rule_sets import Decision, RuleSet

REQUEST_FIELDS = (
    "order_ref",
    "buyer_id",
    "seller_id",
    "category",
    "market",
    "reason_code",
    "pickup_address",
    "delivered_at",
)


@dataclass(frozen=True)
class CheckResult:
    decision: Decision
    shadow: Decision | None
    case: ReviewCase | None
    features: dict[str, Any]
    facts: ItemFacts


def request_of(check: Mapping[str, Any]) -> dict[str, Any]:
    """The return's facts as the feature functions read them."""
    return {name: check[name] for name in REQUEST_FIELDS}


def shipped_serials(order_window: RollingCounts | None, as_of_ms: int) -> list[str] | None:
    """The serials the order shipped (None: the order is unknown, or it shipped more than
    the window keeps per day, so the serial check cannot be made)."""
    if order_window is None:
        return None
    serials, saturated = order_window.members("serials", as_of_ms, HORIZON_DAYS)
    return None if saturated else sorted(serials)


def decide_check(
    check: Mapping[str, Any],
    windows: Mapping[tuple[str, str], RollingCounts],
    live: RuleSet,
    shadow: RuleSet | None,
    review_hours: int,
) -> CheckResult:
    """`windows`: the rolling counts of the keys `keys_read` names (missing: none yet)."""
    request = request_of(check)
    at = int(check["inspected_at"])
    order_window = windows.get((ORDER_SUBJECT, request["order_ref"]))
    facts = item_facts(request, check["items"], shipped_serials(order_window, at), at)
    features = return_features(request, facts, windows, at)
    decision = live.decide(features)
    shadow_decision = shadow.decide(features) if shadow is not None else None
    case = open_case(check["envelope"]["return_id"], decision, at, review_hours)
    return CheckResult(decision, shadow_decision, case, features, facts)


def counted_after(check: Mapping[str, Any], result: CheckResult) -> list[Increment]:
    """The inspection's counts, added once the return is decided (its own inspection is
    never part of its own features), with the serial check the decision made."""
    request = request_of(check)
    return merged(counted_inspection(request, result.facts, int(check["inspected_at"])))


def windows_needed(check: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    return keys_read(
        check["buyer_id"], check["seller_id"], check["pickup_address"], check["order_ref"]
    )


def decided_body(check: Mapping[str, Any], result: CheckResult, now_ms: int) -> dict[str, Any]:
    """The `RiskDecided` record (without its envelope)."""
    decision = result.decision
    shadow = result.shadow
    body: dict[str, Any] = {
        "decision_id": check["decision_id"],
        "outcome": decision.outcome.value,
        "score": decision.score,
        "rule_set": decision.rule_set,
        "rule_set_version": decision.version,
        "reason": decision.reason,
        "rules": [
            {
                "rule_id": fired.rule_id,
                "score": fired.score,
                "inputs_json": orjson.dumps(fired.inputs, option=orjson.OPT_SORT_KEYS).decode(),
            }
            for fired in decision.fired
        ],
        "missing": list(decision.missing),
        "case_id": result.case.case_id if result.case else None,
        "review_deadline_at": result.case.deadline_ms if result.case else None,
        "shadow_outcome": shadow.outcome.value if shadow else None,
        "shadow_rule_set_version": shadow.version if shadow else None,
        "shadow_rules": [fired.rule_id for fired in shadow.fired] if shadow else [],
        "decided_at": now_ms,
    }
    return body
