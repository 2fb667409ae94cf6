"""The commands each step sends (pickup, intake, reservation, refund, replacement, cancel pickup),
each with its deterministic id and deadline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from services.decisions.refunds.refund_plan import order_record_of
from services.decisions.saga.state import DEFAULT_WAREHOUSE, SagaState, Status, changed
from services.decisions.saga.step import Step, set_deadline, tries_of


def send_command(
    step: Step,
    state: SagaState,
    stage: Status,
    name: str,
    body: dict[str, Any],
    deadline_ms: int,
    *id_parts: str,
) -> SagaState:
    """The stage's command, its try n+1 (the try is the last part of its id), and the stage's
    deadline for an answer."""
    tries = tries_of(state, str(stage))
    step.command(name, body, *id_parts, str(tries + 1), attempt=tries + 1)
    return set_deadline(step, state, deadline_ms)


def request_pickup(step: Step, state: SagaState) -> SagaState:
    return send_command(
        step,
        state,
        Status.PICKUP_PENDING,
        "PickupRequested",
        {
            "buyer_id": state.request.get("buyer_id", ""),
            "pickup_address": state.request.get("pickup_address", ""),
            "parcel_count": 1,
            "idempotency_key": f"{state.return_id}-pickup",
        },
        step.config.booking_deadline_ms,
    )


def request_intake(step: Step, state: SagaState) -> SagaState:
    """Take the items in, with what the order says of each sku (the disposition rules read
    its category, unit value and age)."""
    request = state.request
    facts = {}
    for line in request.get("lines") or ():
        price = line.get("unit_price") or {}
        facts[line["sku"]] = {
            "sku": line["sku"],
            "category": str(line.get("category") or request.get("category") or ""),
            "unit_price_minor": price.get("amount_minor"),
            "currency": str(price.get("currency") or ""),
        }
    body = {
        "warehouse_id": DEFAULT_WAREHOUSE,
        "items": state.inspection["items"],
        "item_facts": list(facts.values()),
        "market": str(request.get("market") or ""),
        "delivered_at": request.get("delivered_at"),
    }
    return send_command(
        step, state, Status.INTAKE_PENDING, "IntakeRequested", body, step.config.intake_deadline_ms
    )


def request_refund(step: Step, state: SagaState) -> SagaState:
    """Re-sent with the same idempotency key until the provider answers for good: a retry
    after a lost answer must find the first refund, never make a second one."""
    money_attempt = state.refund.get("attempt", 1)
    return send_command(
        step,
        state,
        Status.REFUND_PENDING,
        "RefundRequested",
        {
            "amount": state.refund["amount"],
            "method": state.refund["method"],
            "lines": state.refund["lines"],
            "idempotency_key": refund_key(state.return_id, money_attempt),
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
                    "facts_json": orjson.dumps(rule["facts"], option=orjson.OPT_SORT_KEYS).decode(),
                    "effect": rule["effect"],
                }
                for rule in state.rules_fired
                if rule.get("step") in ("INSPECTION", "REFUND")
            ],
        },
        step.config.refund_deadline_ms,
        str(money_attempt),
    )


def refund_key(return_id: str, attempt: int) -> str:
    """The idempotency key of a return's refund at the provider (its merchant reference)."""
    return f"{return_id}-refund-{attempt}"


def complete(
    step: Step,
    state: SagaState,
    refunded: dict[str, Any] | None,
    refund: Mapping[str, Any] | None = None,
) -> None:
    """ReturnCompleted, with what settlement charges the liable party from: who is liable,
    the refund's breakdown, and the provider's refund (`refund`: the refund as it ends, the
    state's by default)."""
    refund = state.refund if refund is None else refund
    step.command(
        "ReturnCompleted",
        {
            "refunded": refunded,
            "completed_at": step.now_ms,
            "liable": refund.get("liable"),
            "breakdown": list(refund.get("breakdown", [])),
            "method": refund.get("method"),
            "provider": refund.get("provider"),
            "provider_refund_id": refund.get("provider_refund_id"),
            "idempotency_key": (
                refund_key(state.return_id, refund.get("attempt", 1))
                if refund.get("provider")
                else None
            ),
            "order_ref": str(state.request.get("order_ref", "")) or None,
            "carrier_id": str(state.pickup.get("carrier", "")) or None,
        },
    )


def _refund_account(state: SagaState) -> dict[str, str] | None:
    if state.refund.get("method") != "BANK_TRANSFER":
        return None
    return state.request.get("refund_account") or None


def request_reservation(step: Step, state: SagaState) -> SagaState:
    """Ask the order refund ledger (keyed by order_ref) for this return's share of its order;
    asked again with the same key after a lost answer, it answers what it reserved."""
    plan = state.inspection["refund_plan"]
    return send_command(
        step,
        state,
        Status.RESERVING_REFUND,
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
        step.config.refund_deadline_ms,
    )


def request_replacement(step: Step, state: SagaState) -> SagaState:
    return send_command(
        step,
        state,
        Status.EXCHANGE_PENDING,
        "ReplacementOrderRequested",
        {
            "order_ref": str(state.request.get("order_ref", "")),
            "buyer_id": str(state.request.get("buyer_id", "")),
            "sku": str(state.request.get("exchange_sku") or ""),
            "quantity": sum(line["quantity_returned"] for line in state.request["lines"]),
            "ship_to": str(state.request.get("pickup_address", "")),
            "idempotency_key": f"{state.return_id}-replacement",
        },
        step.config.exchange_deadline_ms,
    )


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
    state = changed(
        state,
        status=Status.CANCELLING,
        outcome={"reason": reason},
        tries={**state.tries, str(Status.CANCELLING): 0},
    )
    cancel_pickup_command(step, state, reason, 0)
    return set_deadline(step, state, step.config.booking_deadline_ms)
