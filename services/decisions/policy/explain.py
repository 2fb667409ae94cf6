"""`boomerang policy explain <request.json>`: a return's whole decision without Kafka. Pure:
the request file is read and checked against its JSON Schema by
`services.policy_files.explain_request`.

The request format is `schemas/policy/return-explain-request.schema.json` (examples under
`deploy/policy-examples/`). The answer: accepted or rejected (with the code), the policy
version, the reason family, the liable party, every rule that fired, the refund per line with
every component, the total and where the money goes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from services.decisions.policy.liability import Grade, InspectionFacts
from services.decisions.policy.policy_layers import PolicySet
from services.decisions.policy.policy_rules import RequestFacts, decide_request, resolve_policy
from services.decisions.policy.return_decisions import decide_refund
from services.decisions.refunds.order_model import (
    OrderRefundHistory,
    RefundArithmeticError,
    order_from_record,
)


class ExplainInputError(ValueError):
    """The request file is not a return this command can explain; says where and why."""


def _epoch_ms(value: str, where: str) -> int:
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError as exc:
        raise ExplainInputError(f"{where}: not a date or timestamp: {value!r}") from exc
    return _exact_ms(moment)


def _exact_ms(moment: datetime) -> int:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    delta = moment - epoch
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def explain(policies: PolicySet, request: dict[str, Any]) -> dict[str, Any]:
    order_in, return_in = request["order"], request["return"]
    try:
        order = order_from_record(order_in["order_ref"], order_in)
    except RefundArithmeticError as exc:
        raise ExplainInputError(f"order: {exc}") from exc
    policy = resolve_policy(
        policies, request["market"], return_in["category"], request["seller_id"]
    )
    if policy.currency != order.currency:
        raise ExplainInputError(
            f"order.currency: {order.currency} but market {policy.market} settles in "
            f"{policy.currency}"
        )
    facts = RequestFacts(
        return_in["category"],
        return_in["reason_code"],
        _epoch_ms(order_in["delivered_at"], "order.delivered_at"),
        _epoch_ms(return_in["requested_at"], "return.requested_at"),
        return_in.get("photos", 0),
    )
    decision = decide_request(policy, facts)
    answer: dict[str, Any] = {
        "order_ref": order.order_ref,
        "accepted": decision.accepted,
        "rejection": (
            {"code": decision.rejection_code, "detail": decision.detail}
            if not decision.accepted
            else None
        ),
        "policy_version": policy.version,
        "reason_family": str(decision.family) if decision.family else None,
        "liability": None,
        "rules_fired": [rule.to_record() for rule in decision.rules_fired],
        "refund": None,
        "destination": None,
    }
    if not decision.accepted or decision.family is None:
        return answer

    inspection_in = request.get("inspection")
    inspection = None
    if inspection_in is not None:
        inspection = InspectionFacts(
            Grade(inspection_in["grade"]),
            inspection_in.get("matches_order", True),
            inspection_in.get("weight_plausible", True),
            inspection_in.get("packaging_damaged_on_arrival", False),
        )
    returning: dict[str, int] = {}
    for line in return_in["lines"]:
        returning[line["line_id"]] = returning.get(line["line_id"], 0) + line["quantity"]
    try:
        refund = decide_refund(
            policy,
            order,
            decision.family,
            returning,
            order_in["payment_method"],
            pickup_damage_noted=bool(request.get("pickup", {}).get("damage_noted", False)),
            inspection=inspection,
            history=OrderRefundHistory.from_record(request.get("earlier_returns")),
            store_credit_chosen=bool(return_in.get("store_credit", False)),
        )
    except RefundArithmeticError as exc:
        raise ExplainInputError(f"return.lines: {exc}") from exc
    answer["liability"] = refund.liability_record()
    answer["rules_fired"] += [rule.to_record() for rule in refund.rules_fired]
    if refund.rejected:
        answer["accepted"] = False
        answer["rejection"] = {
            "code": "INSPECTION_REJECTED",
            "detail": refund.liability.rules_fired[-1].effect,
        }
        return answer
    answer["refund"] = refund.refund_record(order)
    answer["destination"] = refund.destination_record(order_in["payment_method"])
    return answer
