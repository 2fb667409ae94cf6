"""Compensation: registered before each step, run in reverse order one at a time, each confirmed by
an event; what arrives while cancelling or compensating."""

from __future__ import annotations

from typing import Any

from services.decisions.saga.commands import cancel_pickup_command
from services.decisions.saga.state import (
    NOT_CANCELLED_PREFIX,
    OPERATOR_CANCEL,
    SagaState,
    Status,
    changed,
)
from services.decisions.saga.step import Step, finish, set_deadline, ticket_facts, tries_of


def start_compensation(
    step: Step, state: SagaState, failed_step: str, reason: str, by_operator: bool = False
) -> SagaState:
    """Undo the steps done so far, last first. Nothing registered → straight to the end.
    `by_operator`: a person cancelled the return, which ends CANCELLED, not COMPENSATED."""
    if state.refund.get("status") == "SUCCEEDED":  # the pivot: money paid, no way back
        return finish(
            step,
            state,
            Status.NEEDS_ATTENTION,
            failed_step,
            f"{reason}; refund already paid, cannot compensate",
            ("paid-refund-cannot-compensate", ticket_facts(state)),
        )
    pending = list(reversed(state.compensations))
    step.notes.append(f"compensating ({', '.join(pending) or 'nothing to undo'}): {reason}")
    state = changed(
        state,
        status=Status.COMPENSATING,
        compensation={
            "failed_step": failed_step,
            "reason": reason,
            "pending": pending,
            "done": [],
            **({OPERATOR_CANCEL: True} if by_operator else {}),
        },
        tries={**state.tries, str(Status.COMPENSATING): 0},
    )
    return next_compensation(step, state)


def next_compensation(step: Step, state: SagaState) -> SagaState:
    comp = dict(state.compensation)
    while comp["pending"]:
        action = comp["pending"][0]
        tries = tries_of(state, str(Status.COMPENSATING))
        if action == "void-refund":
            refund_id = state.refund.get("provider_refund_id")
            if state.refund.get("status") != "PENDING" or not refund_id:
                comp = _skip(comp, action, "no pending refund to void")
                continue
            step.command(
                "RefundVoidRequested",
                {"provider_refund_id": refund_id, "reason": comp["reason"]},
                str(tries + 1),
                attempt=tries + 1,
            )
        elif action == "release-reservation":
            step.command(
                "RefundReservationReleaseRequested",
                {
                    "order_ref": str(state.request.get("order_ref", "")),
                    "reason": comp["reason"],
                    "idempotency_key": f"{state.return_id}-reservation-release",
                },
                str(tries + 1),
                attempt=tries + 1,
            )
        elif action == "reverse-intake":
            step.command(
                "IntakeReverseRequested",
                {"reason": comp["reason"]},
                str(tries + 1),
                attempt=tries + 1,
            )
        elif action == "cancel-pickup":
            cancel_pickup_command(step, state, comp["reason"], tries)
        state = changed(state, compensation=comp)
        return set_deadline(step, state, step.config.compensation_deadline_ms)
    reason = comp["reason"]
    state = changed(state, compensation=comp)
    if comp.get(OPERATOR_CANCEL):
        return finish(
            step,
            state,
            Status.CANCELLED,
            comp["failed_step"],
            reason,
            ("cancelled-by-operator", ticket_facts(state, undone=",".join(comp["done"]))),
        )
    return finish(
        step,
        state,
        Status.COMPENSATED,
        comp["failed_step"],
        reason,
        ("compensated", ticket_facts(state, undone=",".join(comp["done"]))),
    )


def _skip(comp: dict[str, Any], action: str, why: str) -> dict[str, Any]:
    return {**comp, "pending": comp["pending"][1:], "done": [*comp["done"], f"{action} ({why})"]}


def compensation_confirmed(action: str):
    def handle(step: Step) -> SagaState | None:
        state = step.state
        comp = state.compensation
        if not comp["pending"] or comp["pending"][0] != action:
            return None  # not the compensation we are waiting for
        note = step.record.get("reason", "")
        comp = {**comp, "pending": comp["pending"][1:], "done": [*comp["done"], action]}
        step.notes.append(f"compensation {action} confirmed{': ' + note if note else ''}")
        state = changed(
            state, compensation=comp, tries={**state.tries, str(Status.COMPENSATING): 0}
        )
        if action == "void-refund":
            state = changed(state, refund={**state.refund, "status": "VOIDED"})
        return next_compensation(step, state)

    return handle


def cancel_confirmed(step: Step) -> SagaState:
    reason = step.state.outcome.get("reason", "cancelled")
    if step.record["reason"].startswith(NOT_CANCELLED_PREFIX):
        # Forward recovery: the courier was faster; the parcel is on its way, so the
        # return goes on (inspection decides) instead of being cancelled.
        step.notes.append(
            f"{reason}; too late: the carrier had collected the parcel, return goes on"
        )
        state = changed(step.state, outcome={}, status=Status.AWAITING_INSPECTION)
        if not state.pickup.get("collected_at"):
            # The carrier has the parcel but its collection callback never reached us
            # (waiting for it again and cancelling again looped: the carrier repeats the
            # same answer). The warehouse scan or the inspection deadline decides.
            step.notes.append("collection not reported yet: waiting for the warehouse scan")
        return set_deadline(step, state, step.config.inspection_deadline_ms)
    if any(name == "InspectionRecorded" for name, _ in step.state.parked):
        # The carrier says it never collected, yet the warehouse scanned the parcel.
        return finish(
            step,
            step.state,
            Status.NEEDS_ATTENTION,
            "PICKUP",
            "the carrier confirmed the cancellation but the parcel was inspected at the "
            "warehouse: check where the item is before closing the return",
        )
    return finish(step, step.state, Status.CANCELLED, "PICKUP", reason)


def collected_while_cancelling(step: Step) -> SagaState:
    step.notes.append("the carrier collected the parcel while we were cancelling")
    return changed(
        step.state, pickup={**step.state.pickup, "collected_at": step.record["collected_at"]}
    )


def collection_reported_late(step: Step) -> SagaState | None:
    if step.state.pickup.get("collected_at"):
        return None  # known already: nothing to change
    step.notes.append("the carrier's collection report arrived after its cancellation answer")
    return changed(
        step.state, pickup={**step.state.pickup, "collected_at": step.record["collected_at"]}
    )


def too_late_to_cancel(step: Step) -> None:
    step.notes.append("cancellation refused: the parcel has already been collected")
    return None


def refund_paid_while_compensating(step: Step) -> SagaState:
    """Forward recovery: the provider paid after all (its answer was late). Money moved, so
    the return cannot be undone: a person reconciles stock with the refund."""
    r = step.record
    state = changed(
        step.state,
        refund={
            **step.state.refund,
            "status": r.get("status", "SUCCEEDED"),  # RefundSettled: the money arrived
            "provider_refund_id": r["provider_refund_id"],
        },
    )
    if r.get("status") == "PENDING" and "void-refund" in state.compensation.get("pending", []):
        return state  # the void will take it back
    return finish(
        step,
        state,
        Status.NEEDS_ATTENTION,
        "REFUND",
        "refund paid while compensating; stock and refund need reconciling",
        ("refund-paid-during-compensation", ticket_facts(state)),
    )
