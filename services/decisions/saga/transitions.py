"""The saga's entry point `decide` and its table of handlers per (status, event)."""

from __future__ import annotations

from typing import Any

from services.decisions.saga.compensation import (
    cancel_confirmed,
    collected_while_cancelling,
    collection_reported_late,
    compensation_confirmed,
    refund_paid_while_compensating,
    too_late_to_cancel,
)
from services.decisions.saga.disputes import (
    dispute_refund_failed,
    dispute_refund_issued,
    dispute_requested,
    reinspected,
    ruled,
)
from services.decisions.saga.exchange_difference import charge_captured
from services.decisions.saga.forward import (
    buyer_cancelled,
    cancelled_before_booking,
    inspection_recorded,
    intake_completed,
    on_accepted,
    on_rejected,
    on_requested,
    pickup_attempt_failed,
    pickup_completed,
    pickup_scheduled,
)
from services.decisions.saga.operator import (
    on_operator_cancel,
    on_operator_decision,
    on_operator_retry,
)
from services.decisions.saga.personal_data import erased_if_ended, erasure_requested
from services.decisions.saga.pickup_window import (
    drop_off_booked,
    drop_off_chosen,
    rescheduled,
    window_requested,
)
from services.decisions.saga.refund_answers import refund_failed, refund_issued, refund_settled
from services.decisions.saga.refund_routes import (
    buyer_details_provided,
    charge_failed,
    refund_reserved,
    replacement_out_of_stock,
    replacement_placed,
    reservation_refused,
)
from services.decisions.saga.risk_answers import review_decided, review_noted, risk_decided
from services.decisions.saga.state import (
    DEFAULT_CONFIG,
    EVENT_RANK,
    OPERATOR_EVENTS,
    PARKING_RANK,
    PROCESSED_IDS_KEPT,
    STATUS_RANK,
    Command,
    SagaConfig,
    SagaState,
    Status,
    Transition,
    changed,
)
from services.decisions.saga.step import Step, with_history
from services.decisions.saga.timeouts import timed_out


def decide(
    state: SagaState | None,
    name: str,
    record: dict[str, Any],
    now_ms: int,
    config: SagaConfig = DEFAULT_CONFIG,
) -> Transition:
    """The saga's only entry point. `record` is a decoded event with its envelope."""
    envelope = record["envelope"]
    event_id = envelope["event_id"]
    if state is None:
        state = SagaState(
            return_id=envelope["return_id"],
            correlation_id=envelope["correlation_id"],
            created_at=now_ms,
        )
    if event_id in state.processed_event_ids:
        # Its commands are not sent again: the engine stores no state before the commands
        # it led to are on the broker, so a redelivered event's commands were sent.
        return Transition(state, (), duplicate=True)

    before = state.status
    state, commands, outcome = _apply(state, name, record, now_ms, config)
    if outcome == "applied":
        state, more = _apply_parked(state, now_ms, config)
        commands += more
        if state.terminal and state.status != before:
            state = changed(state, ended_at=now_ms)
        state = erased_if_ended(state, now_ms)  # an erasure asked while it ran
    state = changed(
        state,
        processed_event_ids=(*state.processed_event_ids, event_id)[-PROCESSED_IDS_KEPT:],
        last_event_id=event_id,
        updated_at=now_ms,
    )
    return Transition(state, tuple(commands), ignored=outcome == "ignored")


def _apply(
    state: SagaState,
    name: str,
    record: dict[str, Any],
    now_ms: int,
    config: SagaConfig,
    unparked: bool = False,
) -> tuple[SagaState, list[Command], str]:
    """Handle one event: applied, parked (it belongs to a later step) or ignored."""
    step = Step(state, name, record, now_ms, config)
    handler = _HANDLERS.get((state.status, name))
    if handler is not None:
        if unparked:
            step.notes.append("arrived before its step; applied now")
        new_state = handler(step)
        if new_state is not None:
            return with_history(step, new_state), step.commands, "applied"
    elif not state.terminal and EVENT_RANK.get(name, -1) > PARKING_RANK.get(state.status, 99):
        step.notes.append(f"{name} arrived before its step (state {state.status}); parked")
        parked = changed(state, parked=(*state.parked, (name, record)))
        return with_history(step, parked, parked_event=True), [], "parked"
    if not step.notes and name in OPERATOR_EVENTS:
        step.notes.append(f"{name} does not apply to a saga in {state.status}")
    if not step.notes:
        step.notes.append(f"unexpected {name} in state {state.status}")
    return with_history(step, state, ignored=True), [], "ignored"


def _apply_parked(state: SagaState, now_ms: int, config: SagaConfig) -> tuple[SagaState, list]:
    commands: list[Command] = []
    progressed = True
    while progressed and state.parked:
        progressed = False
        for index, (name, record) in enumerate(state.parked):
            if (state.status, name) in _HANDLERS:
                rest = state.parked[:index] + state.parked[index + 1 :]
                state, more, _ = _apply(
                    changed(state, parked=rest), name, record, now_ms, config, True
                )
                commands += more
                progressed = True
                break
        if state.terminal:
            state = changed(state, parked=())
    return state, commands


_HANDLERS: dict[tuple[Status, str], Any] = {
    (Status.NEW, "ReturnRequested"): on_requested,
    (Status.REQUESTED, "ReturnAccepted"): on_accepted,
    (Status.REQUESTED, "ReturnRejected"): on_rejected,
    (Status.REQUESTED, "ReturnCancelled"): cancelled_before_booking,
    (Status.PICKUP_PENDING, "PickupScheduled"): pickup_scheduled,
    (Status.PICKUP_PENDING, "PickupAttemptFailed"): pickup_attempt_failed,
    (Status.PICKUP_SCHEDULED, "PickupAttemptFailed"): pickup_attempt_failed,
    (Status.PICKUP_PENDING, "PickupCompleted"): pickup_completed,
    (Status.PICKUP_SCHEDULED, "PickupCompleted"): pickup_completed,
    (Status.PICKUP_PENDING, "ReturnCancelled"): buyer_cancelled,
    (Status.PICKUP_SCHEDULED, "ReturnCancelled"): buyer_cancelled,
    (Status.CANCELLING, "PickupCancelled"): cancel_confirmed,
    (Status.CANCELLING, "PickupCompleted"): collected_while_cancelling,
    (Status.CANCELLING, "PickupScheduled"): pickup_scheduled,
    (Status.AWAITING_INSPECTION, "InspectionRecorded"): inspection_recorded,
    (Status.AWAITING_INSPECTION, "PickupCompleted"): collection_reported_late,
    (Status.AWAITING_INSPECTION, "ReturnCancelled"): too_late_to_cancel,
    (Status.INTAKE_PENDING, "ReturnCancelled"): too_late_to_cancel,
    (Status.REFUND_PENDING, "ReturnCancelled"): too_late_to_cancel,
    (Status.AWAITING_BUYER_DETAILS, "ReturnCancelled"): too_late_to_cancel,
    (Status.EXCHANGE_PENDING, "ReturnCancelled"): too_late_to_cancel,
    (Status.INTAKE_PENDING, "IntakeCompleted"): intake_completed,
    (Status.RISK_PENDING, "RiskDecided"): risk_decided,
    (Status.HELD_FOR_REVIEW, "RiskReviewDecided"): review_decided,
    (Status.RISK_PENDING, "ReturnCancelled"): too_late_to_cancel,
    (Status.HELD_FOR_REVIEW, "ReturnCancelled"): too_late_to_cancel,
    (Status.RISK_PENDING, "PickupScheduled"): pickup_scheduled,
    (Status.HELD_FOR_REVIEW, "PickupScheduled"): pickup_scheduled,
    (Status.RESERVING_REFUND, "RefundReserved"): refund_reserved,
    (Status.RESERVING_REFUND, "RefundReservationRefused"): reservation_refused,
    (Status.RESERVING_REFUND, "ReturnCancelled"): too_late_to_cancel,
    (Status.RESERVING_REFUND, "PickupScheduled"): pickup_scheduled,
    (Status.REFUND_PENDING, "RefundIssued"): refund_issued,
    (Status.REFUND_PENDING, "RefundFailed"): refund_failed,
    (Status.REFUND_PENDING, "RefundSettled"): refund_settled,
    (Status.COMPENSATING, "RefundSettled"): refund_paid_while_compensating,
    (Status.AWAITING_BUYER_DETAILS, "BuyerDetailsProvided"): buyer_details_provided,
    (Status.EXCHANGE_PENDING, "ReplacementOrderPlaced"): replacement_placed,
    (Status.EXCHANGE_CHARGING, "ChargeCaptured"): charge_captured,
    (Status.EXCHANGE_CHARGING, "ChargeFailed"): charge_failed,
    (Status.EXCHANGE_CHARGING, "ReturnCancelled"): too_late_to_cancel,
    (Status.EXCHANGE_PENDING, "ReplacementOutOfStock"): replacement_out_of_stock,
    (Status.COMPENSATING, "RefundVoided"): compensation_confirmed("void-refund"),
    (Status.COMPENSATING, "IntakeReversed"): compensation_confirmed("reverse-intake"),
    (Status.COMPENSATING, "RefundReservationReleased"): compensation_confirmed(
        "release-reservation"
    ),
    (Status.COMPENSATING, "PickupCancelled"): compensation_confirmed("cancel-pickup"),
    (Status.COMPENSATING, "RefundIssued"): refund_paid_while_compensating,
    # the carrier's callback can overtake the booking confirmation: keep its details
    (Status.AWAITING_INSPECTION, "PickupScheduled"): pickup_scheduled,
    (Status.INTAKE_PENDING, "PickupScheduled"): pickup_scheduled,
    (Status.REFUND_PENDING, "PickupScheduled"): pickup_scheduled,
}
# a decided return disputed by its buyer (any other status: refused with a note)
for _status in Status:
    _HANDLERS[(_status, "DisputeRequested")] = dispute_requested
_HANDLERS[(Status.DISPUTED, "InspectionRecorded")] = reinspected
_HANDLERS[(Status.DISPUTED, "DisputeRuled")] = ruled
_HANDLERS[(Status.DISPUTE_REFUND_PENDING, "RefundIssued")] = dispute_refund_issued
_HANDLERS[(Status.DISPUTE_REFUND_PENDING, "RefundFailed")] = dispute_refund_failed
# a dispute's deadline and retries (a person's cancel does not apply: the return was done)
for _status in (Status.DISPUTED, Status.DISPUTE_REFUND_PENDING):
    _HANDLERS[(_status, "SagaStepTimedOut")] = timed_out
    _HANDLERS[(_status, "SagaRetryRequested")] = on_operator_retry
for _status in STATUS_RANK.keys() | {Status.CANCELLING, Status.COMPENSATING}:
    _HANDLERS[(_status, "SagaStepTimedOut")] = timed_out
    _HANDLERS[(_status, "SagaRetryRequested")] = on_operator_retry
    _HANDLERS[(_status, "SagaCancelRequested")] = on_operator_cancel
_HANDLERS[(Status.NEEDS_ATTENTION, "SagaResumeRequested")] = on_operator_decision
# a buyer's erasure request: noted whatever the status, applied once the return ended
for _status in Status:
    _HANDLERS[(_status, "PersonalDataErasureRequested")] = erasure_requested
# a booked pickup may move: asked by the buyer, or proposed by the carrier
_HANDLERS[(Status.PICKUP_PENDING, "PickupWindowRequested")] = window_requested
_HANDLERS[(Status.PICKUP_SCHEDULED, "PickupWindowRequested")] = window_requested
_HANDLERS[(Status.PICKUP_PENDING, "DropOffChosen")] = drop_off_chosen
_HANDLERS[(Status.PICKUP_SCHEDULED, "DropOffChosen")] = drop_off_chosen
for _status in (
    Status.PICKUP_PENDING,
    Status.PICKUP_SCHEDULED,
    Status.CANCELLING,
    Status.AWAITING_INSPECTION,
):
    _HANDLERS[(_status, "PickupRescheduled")] = rescheduled
    _HANDLERS[(_status, "DropOffBooked")] = drop_off_booked
# a verdict on a return paid before it was reviewed (outcome review) is kept, not acted on
for _status in (
    Status.RESERVING_REFUND,
    Status.AWAITING_BUYER_DETAILS,
    Status.EXCHANGE_PENDING,
    Status.REFUND_PENDING,
):
    _HANDLERS[(_status, "RiskReviewDecided")] = review_noted
# the buyer may give the bank account any time before the refund needs it
for _status in (
    Status.REQUESTED,
    Status.PICKUP_PENDING,
    Status.PICKUP_SCHEDULED,
    Status.CANCELLING,
    Status.AWAITING_INSPECTION,
    Status.INTAKE_PENDING,
    Status.RISK_PENDING,
    Status.HELD_FOR_REVIEW,
    Status.RESERVING_REFUND,
    Status.EXCHANGE_CHARGING,
    Status.EXCHANGE_PENDING,
):
    _HANDLERS[(_status, "BuyerDetailsProvided")] = buyer_details_provided

# Everything the coordinator consumes: the events some status has a handler for.
CONSUMED_EVENTS = frozenset(name for _, name in _HANDLERS)
