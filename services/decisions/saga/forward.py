"""The forward path up to intake: request, acceptance, pickup, inspection, intake."""

from __future__ import annotations

import json
from typing import Any

from services.decisions.refunds.order_model import RefundArithmeticError
from services.decisions.refunds.refund_plan import RefundPlan, plan_refund
from services.decisions.saga.commands import (
    cancel_pickup,
    request_intake,
    request_pickup,
)
from services.decisions.saga.risk_answers import request_risk_check, towards_the_money
from services.decisions.saga.state import SagaState, Status, changed
from services.decisions.saga.step import (
    Step,
    copied,
    exhausted,
    finish,
    retry_later,
    set_deadline,
    ticket_facts,
)
from services.decisions.stock.disposition import weight_far_below_expected


def on_requested(step: Step) -> SagaState:
    r = step.record
    request = {
        **copied(r, "order_ref", "buyer_id", "seller_id", "category"),
        "market": r.get("market", ""),
        **copied(r, "reason_code", "lines", "delivered_at", "payment_method"),
        "pickup_address": r.get("pickup_address", ""),
        "requested_at": step.envelope["occurred_at"],
        "order": r.get("order"),
        "store_credit_chosen": r.get("store_credit_chosen", False),
        "photo_refs": r.get("photo_refs", []),
        "resolution": r.get("resolution") or "REFUND",
        "exchange_sku": r.get("exchange_sku"),
        "exchange_unit_price_minor": r.get("exchange_unit_price_minor"),
        "pay_difference": bool(r.get("pay_difference")),
        "refund_account": r.get("refund_account"),
    }
    return changed(
        step.state,
        status=Status.REQUESTED,
        request=request,
        correlation_id=step.state.correlation_id or step.envelope["correlation_id"],
    )


def _decision_rules(record: dict[str, Any], step_name: str) -> tuple[dict[str, Any], ...]:
    return tuple(
        {
            "rule_id": rule["rule_id"],
            "facts": json.loads(rule["facts_json"]),
            "effect": rule["effect"],
            "step": step_name,
        }
        for rule in record.get("rules") or ()
    )


def on_accepted(step: Step) -> SagaState:
    r = step.record
    policy_json = r.get("policy_json")
    request = step.state.request
    if r.get("reason_family"):
        request = {**request, "reason_family": r["reason_family"]}
    if r.get("policy_digest"):  # a dispute reads the whole policy again by it
        request = {**request, "policy_digest": r["policy_digest"]}
    state = changed(
        step.state,
        status=Status.PICKUP_PENDING,
        policy_version=r["policy_version"],
        policy=json.loads(policy_json) if policy_json else {},
        request=request,
        rules_fired=(*step.state.rules_fired, *_decision_rules(r, "REQUEST")),
        compensations=(*step.state.compensations, "cancel-pickup"),  # registered before the step
    )
    return request_pickup(step, state)


def on_rejected(step: Step) -> SagaState:
    reason = f"{step.record['rejection_code']}: {step.record['detail']}"
    state = changed(
        step.state,
        policy_version=step.record.get("policy_version", ""),
        rules_fired=(*step.state.rules_fired, *_decision_rules(step.record, "REQUEST")),
    )
    return finish(step, state, Status.REJECTED, "REQUEST", reason)


def cancelled_before_booking(step: Step) -> SagaState:
    reason = f"cancelled by {step.record['cancelled_by']}: {step.record['reason']}"
    return finish(step, step.state, Status.CANCELLED, "REQUEST", reason)


def buyer_cancelled(step: Step) -> SagaState:
    reason = f"cancelled by {step.record['cancelled_by']}: {step.record['reason']}"
    return cancel_pickup(step, step.state, reason)


def pickup_scheduled(step: Step) -> SagaState:
    r = step.record
    pickup = {
        **step.state.pickup,
        **copied(r, "carrier", "booking_id", "tracking_number", "window_start", "window_end"),
    }
    state = changed(step.state, pickup=pickup)
    if state.status != Status.PICKUP_PENDING:
        step.notes.append("pickup details recorded")
        return state
    state = changed(state, status=Status.PICKUP_SCHEDULED)
    return set_deadline(step, state, step.config.collection_deadline_ms)


def pickup_attempt_failed(step: Step) -> SagaState | None:
    r = step.record
    state = step.state
    if r["failure_reason"] == "CARRIER_ERROR" and state.status == Status.PICKUP_SCHEDULED:
        # A re-sent booking failed after the first one was confirmed: the pickup stands and
        # its collection deadline keeps running (retrying would book nothing and, with no
        # command for this step, leave the saga without a timer).
        step.notes.append(
            f"booking error for a pickup already scheduled ({state.pickup.get('booking_id')}): "
            f"{r['detail']}"
        )
        return None
    if r["failure_reason"] == "CARRIER_ERROR":  # booking failed: a transient failure
        if exhausted(step, state):
            return finish(
                step,
                state,
                Status.CANCELLED,
                "PICKUP",
                f"carrier unavailable after {step.config.max_tries} tries: {r['detail']}",
            )
        return retry_later(step, state, f"carrier error: {r['detail']}")
    attempts = [
        *state.pickup.get("failed_attempts", []),
        {"attempt_no": r["attempt_no"], "reason": r["failure_reason"]},
    ]
    state = changed(state, pickup={**state.pickup, "failed_attempts": attempts})
    step.notes.append(f"pickup attempt {r['attempt_no']} failed: {r['failure_reason']}")
    if len(attempts) >= step.config.pickup_attempt_limit:
        return cancel_pickup(
            step, state, f"pickup failed {len(attempts)} times ({r['failure_reason']})"
        )
    return state


def pickup_completed(step: Step) -> SagaState:
    r = step.record
    pickup = {
        **step.state.pickup,
        **copied(r, "booking_id", "tracking_number", "collected_at", "carrier_noted_damage"),
    }
    state = changed(step.state, status=Status.AWAITING_INSPECTION, pickup=pickup)
    return set_deadline(step, state, step.config.inspection_deadline_ms)


def inspection_problem(items: list[dict[str, Any]]) -> str:
    """Why an inspection rejects the return ("" when it does not)."""
    if not items:
        return "empty parcel: no item inspected"
    mismatched = [i["sku"] for i in items if not i["matches_order"]]
    if mismatched:
        return f"item does not match the order: {', '.join(mismatched)}"
    light = [i["sku"] for i in items if weight_far_below_expected(i)]
    if light:
        return f"weight far below expected (empty box or swap?): {', '.join(light)}"
    return ""


# what a return whose lines do not fit its order (or its policy) raises when planned
PLAN_ERRORS = (RefundArithmeticError, KeyError, ValueError)


def plan_for_items(state: SagaState, items: list[dict[str, Any]]) -> RefundPlan:
    """The policy's refund of the return for these inspected items (PLAN_ERRORS when it
    cannot be worked out)."""
    return plan_refund(
        state.request, state.policy, items, bool(state.pickup.get("carrier_noted_damage"))
    )


def inspection_recorded(step: Step) -> SagaState:
    r = step.record
    inspection = {
        **copied(r, "scan_id", "station_id", "inspector_id", "items", "inspected_at"),
    }
    state = step.state
    problem = inspection_problem(r["items"])
    if not problem:
        try:
            plan = plan_for_items(state, r["items"])
        except PLAN_ERRORS as exc:
            inspection["refund_problem"] = f"the refund cannot be worked out: {exc}"
            step.notes.append(inspection["refund_problem"])
        else:
            problem = plan.rejection
            inspection["refund_plan"] = plan.refund
            rules = tuple({**rule, "step": "INSPECTION"} for rule in plan.rules)
            state = changed(state, rules_fired=(*state.rules_fired, *rules))
    if problem:
        inspection["rejection"] = problem
        step.notes.append(f"inspection rejects the return: {problem}; item to quarantine")
    state = changed(
        state,
        status=Status.INTAKE_PENDING,
        inspection=inspection,
        compensations=(*state.compensations, "reverse-intake"),
    )
    return request_intake(step, state)


def intake_completed(step: Step) -> SagaState:
    state = changed(
        step.state,
        intake={"warehouse_id": step.record["warehouse_id"], "movements": step.record["movements"]},
    )
    rejection = state.inspection.get("rejection")
    if rejection:
        return finish(
            step,
            state,
            Status.REJECTED,
            "INSPECTION",
            rejection,
            ("inspection-rejected", ticket_facts(state, scan_id=state.inspection["scan_id"])),
        )
    problem = state.inspection.get("refund_problem")
    if problem:
        return finish(
            step,
            state,
            Status.NEEDS_ATTENTION,
            "REFUND",
            problem,
            ("refund-not-computable", ticket_facts(state, problem=problem)),
        )
    if step.config.risk_step:
        return request_risk_check(step, state)
    return towards_the_money(step, state)
