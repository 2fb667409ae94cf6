"""The commands each step sends (pickup, intake, reservation, refund, replacement, cancel pickup),
each with its deterministic id and deadline."""

from __future__ import annotations

import json
from dataclasses import replace

from services.decisions.refunds.refund_plan import order_record_of
from services.decisions.saga.state import DEFAULT_WAREHOUSE, SagaState, Status
from services.decisions.saga.step import Step, set_deadline, tries_of


def request_pickup(step: Step, state: SagaState) -> SagaState:
    tries = tries_of(state, str(Status.PICKUP_PENDING))
    step.command(
        "PickupRequested",
        {
            "buyer_id": state.request.get("buyer_id", ""),
            "pickup_address": state.request.get("pickup_address", ""),
            "parcel_count": 1,
            "idempotency_key": f"{state.return_id}-pickup",
        },
        str(tries + 1),
        attempt=tries + 1,
    )
    return set_deadline(step, state, step.config.booking_deadline_ms)


def request_intake(step: Step, state: SagaState) -> SagaState:
    tries = tries_of(state, str(Status.INTAKE_PENDING))
    step.command(
        "IntakeRequested",
        {"warehouse_id": DEFAULT_WAREHOUSE, "items": state.inspection["items"]},
        str(tries + 1),
        attempt=tries + 1,
    )
    return set_deadline(step, state, step.config.intake_deadline_ms)


def request_refund(step: Step, state: SagaState) -> SagaState:
    """Re-sent with the same idempotency key until the provider answers for good: a retry
    after a lost answer must find the first refund, never make a second one."""
    tries = tries_of(state, str(Status.REFUND_PENDING))
    money_attempt = state.refund.get("attempt", 1)
    step.command(
        "RefundRequested",
        {
            "amount": state.refund["amount"],
            "method": state.refund["method"],
            "lines": state.refund["lines"],
            "idempotency_key": f"{state.return_id}-refund-{money_attempt}",
            "breakdown": state.refund.get("breakdown", []),
            "liable": state.refund.get("liable"),
            "paid_with": state.refund.get("paid_with"),
            "policy_version": state.refund.get("policy_version"),
            "refund_account": _refund_account(state),
            "order_ref": str(state.request.get("order_ref", "")),
            "order_paid_minor": state.refund.get("order_paid_minor"),
            "fallback_from": (state.refund.get("fallback") or {}).get("from"),
            "rules": [
                {
                    "rule_id": rule["rule_id"],
                    "facts_json": json.dumps(rule["facts"], sort_keys=True),
                    "effect": rule["effect"],
                }
                for rule in state.rules_fired
                if rule.get("step") in ("INSPECTION", "REFUND")
            ],
        },
        str(money_attempt),
        str(tries + 1),
        attempt=tries + 1,
    )
    return set_deadline(step, state, step.config.refund_deadline_ms)


def _refund_account(state: SagaState) -> dict[str, str] | None:
    if state.refund.get("method") != "BANK_TRANSFER":
        return None
    return state.request.get("refund_account") or None


def request_reservation(step: Step, state: SagaState) -> SagaState:
    """Ask the order refund ledger (keyed by order_ref) for this return's share of its order;
    asked again with the same key after a lost answer, it answers what it reserved."""
    tries = tries_of(state, str(Status.RESERVING_REFUND))
    plan = state.inspection["refund_plan"]
    step.command(
        "RefundReservationRequested",
        {
            "order_ref": str(state.request["order_ref"]),
            "order": order_record_of(state.request),
            "order_complete": bool(state.request.get("order")),
            "returning": plan["returning"],
            "liable": plan["liable"],
            "fees": plan["fee_terms"],
            "idempotency_key": f"{state.return_id}-reservation",
        },
        str(tries + 1),
        attempt=tries + 1,
    )
    return set_deadline(step, state, step.config.refund_deadline_ms)


def request_replacement(step: Step, state: SagaState) -> SagaState:
    tries = tries_of(state, str(Status.EXCHANGE_PENDING))
    step.command(
        "ReplacementOrderRequested",
        {
            "order_ref": str(state.request.get("order_ref", "")),
            "buyer_id": str(state.request.get("buyer_id", "")),
            "sku": str(state.request.get("exchange_sku") or ""),
            "quantity": sum(line["quantity_returned"] for line in state.request["lines"]),
            "ship_to": str(state.request.get("pickup_address", "")),
            "idempotency_key": f"{state.return_id}-replacement",
        },
        str(tries + 1),
        attempt=tries + 1,
    )
    return set_deadline(step, state, step.config.exchange_deadline_ms)


def cancel_pickup_command(step: Step, state: SagaState, reason: str, tries: int) -> None:
    step.command(
        "PickupCancelRequested",
        {
            "booking_id": state.pickup.get("booking_id"),
            "reason": reason,
            "idempotency_key": f"{state.return_id}-pickup-cancel",
        },
        str(tries + 1),
        attempt=tries + 1,
    )


def cancel_pickup(step: Step, state: SagaState, reason: str) -> SagaState:
    step.notes.append(reason)
    state = replace(
        state,
        status=Status.CANCELLING,
        outcome={"reason": reason},
        tries={**state.tries, str(Status.CANCELLING): 0},
    )
    cancel_pickup_command(step, state, reason, 0)
    return set_deadline(step, state, step.config.booking_deadline_ms)
