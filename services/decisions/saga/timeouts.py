"""Durable timers firing: a missed deadline is retried (the step's command re-sent) or given up."""

from __future__ import annotations

from services.decisions.saga.commands import (
    cancel_pickup,
    cancel_pickup_command,
    request_intake,
    request_pickup,
    request_refund,
    request_replacement,
    request_reservation,
)
from services.decisions.saga.compensation import next_compensation, start_compensation
from services.decisions.saga.disputes import dispute_overdue, request_dispute_refund
from services.decisions.saga.exchange_difference import request_charge
from services.decisions.saga.refund_answers import fall_back, wait_for_settlement
from services.decisions.saga.risk_answers import (
    request_risk_check,
    review_overdue,
    risk_check_overdue,
)
from services.decisions.saga.state import STEP_OF, SagaState, Status, changed
from services.decisions.saga.step import (
    Step,
    count_try,
    exhausted,
    finish,
    set_deadline,
    ticket_facts,
    tries_of,
)


def timed_out(step: Step) -> SagaState | None:
    state = step.state
    timer = state.timer
    if not timer or step.record["timer_id"] != timer.get("id"):
        step.notes.append(f"stale timer {step.record['timer_id']}")
        return None
    state = changed(state, timer={})
    status = state.status
    if timer["kind"] == "retry":
        step.notes.append(f"retry timer fired ({timer['id']})")
        return redo(step, state)
    step.notes.append(f"deadline passed ({timer['id']})")
    if status == Status.PICKUP_SCHEDULED:
        return cancel_pickup(step, state, "pickup not completed before its deadline")
    if status == Status.AWAITING_INSPECTION:
        return finish(
            step,
            state,
            Status.NEEDS_ATTENTION,
            "INSPECTION",
            "parcel collected but not inspected before the deadline",
            ("parcel-not-inspected", ticket_facts(state)),
        )
    if status == Status.REFUND_PENDING and state.refund.get("status") == "PENDING":
        since = state.refund.get("pending_since")
        if since and step.now_ms < since + step.config.settlement_deadline_ms:
            # the due date passed, or another timer (an operator's retry) fired first
            return wait_for_settlement(step, state)
        return start_compensation(
            step, state, "REFUND", "refund still pending after its settlement time"
        )
    if status == Status.AWAITING_BUYER_DETAILS:
        return fall_back(
            step, state, "the buyer gave no bank account before the deadline", "no_bank_account"
        )
    if status == Status.RISK_PENDING:
        return risk_check_overdue(step, state, step.config.max_tries)
    if status == Status.HELD_FOR_REVIEW:
        return review_overdue(step, state)
    if status == Status.DISPUTED:
        return dispute_overdue(step, state)
    if exhausted(step, state):
        return _give_up(step, state)
    state = count_try(state, str(status))
    return redo(step, state)


def redo(step: Step, state: SagaState) -> SagaState:
    """Send the current step's command again (same idempotency key, next try)."""
    status = state.status
    if status == Status.PICKUP_PENDING:
        return request_pickup(step, state)
    if status == Status.INTAKE_PENDING:
        return request_intake(step, state)
    if status == Status.RESERVING_REFUND:
        return request_reservation(step, state)
    if status == Status.REFUND_PENDING:
        return request_refund(step, state)
    if status == Status.EXCHANGE_PENDING:
        return request_replacement(step, state)
    if status == Status.EXCHANGE_CHARGING:
        return request_charge(step, state)
    if status == Status.RISK_PENDING:
        return request_risk_check(step, state)
    if status == Status.PICKUP_SCHEDULED:  # nothing to send: wait for the collection again
        return set_deadline(step, state, step.config.collection_deadline_ms)
    if status == Status.CANCELLING:
        cancel_pickup_command(
            step, state, state.outcome.get("reason", ""), tries_of(state, str(status))
        )
        return set_deadline(step, state, step.config.booking_deadline_ms)
    if status == Status.COMPENSATING:
        return next_compensation(step, state)
    if status == Status.DISPUTE_REFUND_PENDING:
        return request_dispute_refund(step, state)
    return state


def _give_up(step: Step, state: SagaState) -> SagaState:
    status = state.status
    tries = step.config.max_tries
    if status == Status.PICKUP_PENDING:
        return finish(
            step,
            state,
            Status.CANCELLED,
            "PICKUP",
            f"the carrier never confirmed the booking after {tries} tries",
        )
    if status == Status.REFUND_PENDING:
        return start_compensation(step, state, "REFUND", f"no refund answer after {tries} tries")
    failed = STEP_OF[status] if status != Status.COMPENSATING else "UNKNOWN"
    return finish(
        step,
        state,
        Status.NEEDS_ATTENTION,
        failed,
        f"{status} unconfirmed after {tries} tries",
        (f"stuck-{str(status).lower()}", ticket_facts(state)),
    )
