"""The return saga as a pure transition function: (state, event) -> (new state, commands).

No I/O, no clock: the caller passes `now_ms`. Every command gets a deterministic event id
derived from the return and the step, so re-emitting it after a crash yields the same id
and downstream consumers deduplicate it. Every event id the saga has seen is stored with
the state it changed; a redelivered event changes nothing, and a redelivery of the *last*
event re-emits that event's commands (the outbox) in case they were lost in a crash
between saving the state and publishing.

Forward path:
  ReturnRequested → REQUESTED
  ReturnAccepted → PICKUP_PENDING            + PickupRequested
  PickupScheduled → PICKUP_SCHEDULED
  PickupCompleted → AWAITING_INSPECTION
  InspectionRecorded → INTAKE_PENDING        + IntakeRequested
  IntakeCompleted → REFUND_PENDING           + RefundRequested
  RefundIssued → COMPLETED                   + ReturnCompleted
An event of a later step that arrives early (Kafka orders events within a partition,
not across topics) is parked and applied once the saga reaches its step. Any other event
that does not fit the current state is recorded in the history as ignored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from services.eventing.envelope import deterministic_event_id, new_envelope
from services.refund.refund_amount import refund_for_lines

PRODUCER = "coordinator"
DEFAULT_WAREHOUSE = "WH-RETURNS-1"

Command = tuple[str, dict[str, Any]]  # (record name, record)


class Status(StrEnum):
    NEW = "NEW"  # nothing known yet (an event arrived before ReturnRequested)
    REQUESTED = "REQUESTED"
    PICKUP_PENDING = "PICKUP_PENDING"
    PICKUP_SCHEDULED = "PICKUP_SCHEDULED"
    AWAITING_INSPECTION = "AWAITING_INSPECTION"
    INTAKE_PENDING = "INTAKE_PENDING"
    REFUND_PENDING = "REFUND_PENDING"
    COMPLETED = "COMPLETED"
    REJECTED = "REJECTED"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"


TERMINAL = frozenset({Status.COMPLETED, Status.REJECTED, Status.NEEDS_ATTENTION})

# Progress along the forward path, and the point on it where each event is expected.
STATUS_RANK = {
    Status.NEW: 0,
    Status.REQUESTED: 1,
    Status.PICKUP_PENDING: 2,
    Status.PICKUP_SCHEDULED: 3,
    Status.AWAITING_INSPECTION: 4,
    Status.INTAKE_PENDING: 5,
    Status.REFUND_PENDING: 6,
}
EVENT_RANK = {
    "ReturnRequested": 0,
    "ReturnAccepted": 1,
    "ReturnRejected": 1,
    "PickupScheduled": 2,
    "PickupAttemptFailed": 2,
    "PickupCompleted": 2,
    "InspectionRecorded": 4,
    "IntakeCompleted": 5,
    "RefundIssued": 6,
    "RefundFailed": 6,
}

# The step a status belongs to (for SagaStep fields and timers).
STEP_OF = {
    Status.NEW: "REQUEST",
    Status.REQUESTED: "REQUEST",
    Status.PICKUP_PENDING: "PICKUP",
    Status.PICKUP_SCHEDULED: "PICKUP",
    Status.AWAITING_INSPECTION: "INSPECTION",
    Status.INTAKE_PENDING: "INTAKE",
    Status.REFUND_PENDING: "REFUND",
    Status.COMPLETED: "REFUND",
    Status.REJECTED: "REQUEST",
    Status.NEEDS_ATTENTION: "UNKNOWN",
}


@dataclass(frozen=True)
class SagaState:
    return_id: str
    status: Status = Status.NEW
    correlation_id: str = ""
    request: dict[str, Any] = field(default_factory=dict)
    policy_version: str = ""
    pickup: dict[str, Any] = field(default_factory=dict)
    inspection: dict[str, Any] = field(default_factory=dict)
    intake: dict[str, Any] = field(default_factory=dict)
    refund: dict[str, Any] = field(default_factory=dict)
    outcome: dict[str, Any] = field(default_factory=dict)
    history: tuple[dict[str, Any], ...] = ()
    processed_event_ids: tuple[str, ...] = ()
    last_event_id: str = ""
    outbox: tuple[Command, ...] = ()
    parked: tuple[Command, ...] = ()  # events that arrived before their step
    created_at: int = 0
    updated_at: int = 0

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        data["history"] = list(self.history)
        data["processed_event_ids"] = list(self.processed_event_ids)
        data["outbox"] = [[name, record] for name, record in self.outbox]
        data["parked"] = [[name, record] for name, record in self.parked]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SagaState:
        return cls(
            **{
                **data,
                "status": Status(data["status"]),
                "history": tuple(data.get("history", ())),
                "processed_event_ids": tuple(data.get("processed_event_ids", ())),
                "outbox": tuple((name, record) for name, record in data.get("outbox", ())),
                "parked": tuple((name, record) for name, record in data.get("parked", ())),
            }
        )


@dataclass(frozen=True)
class Transition:
    state: SagaState
    commands: tuple[Command, ...]
    duplicate: bool = False
    ignored: bool = False


class _Step:
    """Builds the next state and commands for one handled event."""

    def __init__(self, state: SagaState, name: str, record: dict[str, Any], now_ms: int) -> None:
        self.state = state
        self.name = name
        self.record = record
        self.envelope = record["envelope"]
        self.now_ms = now_ms
        self.commands: list[Command] = []
        self.notes: list[str] = []

    def command(self, name: str, body: dict[str, Any], attempt: int = 1) -> None:
        return_id = self.state.return_id
        envelope = new_envelope(
            name,
            return_id,
            PRODUCER,
            correlation_id=self.state.correlation_id or self.envelope["correlation_id"],
            causation_id=self.envelope["event_id"],
            attempt=attempt,
            event_id=deterministic_event_id(return_id, "command", name, str(attempt)),
            occurred_at=self.now_ms,
        )
        self.commands.append((name, {"envelope": envelope, **body}))


def decide(state: SagaState | None, name: str, record: dict[str, Any], now_ms: int) -> Transition:
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
        replay = state.outbox if event_id == state.last_event_id else ()
        return Transition(state, replay, duplicate=True)

    state, commands, outcome = _apply(state, name, record, now_ms)
    if outcome == "applied":
        state, more = _apply_parked(state, now_ms)
        commands += more
    state = replace(
        state,
        processed_event_ids=(*state.processed_event_ids, event_id),
        last_event_id=event_id,
        outbox=tuple(commands),
        updated_at=now_ms,
    )
    return Transition(state, tuple(commands), ignored=outcome == "ignored")


def _apply(
    state: SagaState, name: str, record: dict[str, Any], now_ms: int, unparked: bool = False
) -> tuple[SagaState, list[Command], str]:
    """Handle one event: applied, parked (it belongs to a later step) or ignored."""
    step = _Step(state, name, record, now_ms)
    handler = _HANDLERS.get((state.status, name))
    if handler is not None:
        if unparked:
            step.notes.append("arrived before its step; applied now")
        new_state = handler(step)
        return _with_history(step, new_state), step.commands, "applied"
    if not state.terminal and EVENT_RANK.get(name, -1) > STATUS_RANK.get(state.status, 99):
        # Kafka orders events per partition, not across topics: an event of a later step
        # (an inspection before the pickup confirmation) waits for its step.
        step.notes.append(f"{name} arrived before its step (state {state.status}); parked")
        parked = replace(state, parked=(*state.parked, (name, record)))
        return _with_history(step, parked, parked_event=True), [], "parked"
    step.notes.append(f"unexpected {name} in state {state.status}")
    return _with_history(step, state, ignored=True), [], "ignored"


def _apply_parked(state: SagaState, now_ms: int) -> tuple[SagaState, list[Command]]:
    commands: list[Command] = []
    progressed = True
    while progressed and state.parked:
        progressed = False
        for index, (name, record) in enumerate(state.parked):
            if (state.status, name) in _HANDLERS:
                rest = state.parked[:index] + state.parked[index + 1 :]
                state, more, _ = _apply(replace(state, parked=rest), name, record, now_ms, True)
                commands += more
                progressed = True
                break
    return state, commands


def _with_history(
    step: _Step,
    new_state: SagaState,
    ignored: bool = False,
    parked_event: bool = False,
) -> SagaState:
    old = step.state
    entry: dict[str, Any] = {
        "at": step.now_ms,
        "event_type": step.name,
        "event_id": step.envelope["event_id"],
        "from": str(old.status),
        "to": str(new_state.status),
        "step": STEP_OF[new_state.status],
    }
    if step.notes:
        entry["note"] = "; ".join(step.notes)
    if step.commands:
        entry["commands"] = [
            {"command": name, "event_id": rec["envelope"]["event_id"]}
            for name, rec in step.commands
        ]
    if ignored:
        entry["ignored"] = True
    if parked_event:
        entry["parked"] = True
    return replace(new_state, history=(*old.history, entry))


# ---------------------------------------------------------------- handlers


def _requested(step: _Step) -> SagaState:
    r = step.record
    request = {
        "order_ref": r["order_ref"],
        "buyer_id": r["buyer_id"],
        "seller_id": r["seller_id"],
        "category": r["category"],
        "market": r.get("market", ""),
        "reason_code": r["reason_code"],
        "lines": r["lines"],
        "delivered_at": r["delivered_at"],
        "payment_method": r["payment_method"],
        "pickup_address": r.get("pickup_address", ""),
        "requested_at": step.envelope["occurred_at"],
    }
    return replace(
        step.state,
        status=Status.REQUESTED,
        request=request,
        correlation_id=step.state.correlation_id or step.envelope["correlation_id"],
    )


def _accepted(step: _Step) -> SagaState:
    state = step.state
    step.command(
        "PickupRequested",
        {
            "buyer_id": state.request["buyer_id"],
            "pickup_address": state.request.get("pickup_address", ""),
            "parcel_count": 1,
            "idempotency_key": f"{state.return_id}-pickup",
        },
    )
    return replace(
        state, status=Status.PICKUP_PENDING, policy_version=step.record["policy_version"]
    )


def _rejected(step: _Step) -> SagaState:
    reason = f"{step.record['rejection_code']}: {step.record['detail']}"
    step.command(
        "ReturnFailed", {"outcome": "REJECTED", "failed_step": "REQUEST", "reason": reason}
    )
    return replace(
        step.state,
        status=Status.REJECTED,
        policy_version=step.record.get("policy_version", ""),
        outcome={"outcome": "REJECTED", "reason": reason},
    )


def _pickup_scheduled(step: _Step) -> SagaState:
    r = step.record
    pickup = {
        **step.state.pickup,
        "carrier": r["carrier"],
        "booking_id": r["booking_id"],
        "tracking_number": r["tracking_number"],
        "window_start": r["window_start"],
        "window_end": r["window_end"],
    }
    status = (
        Status.PICKUP_SCHEDULED if step.state.status == Status.PICKUP_PENDING else step.state.status
    )
    return replace(step.state, status=status, pickup=pickup)


def _pickup_attempt_failed(step: _Step) -> SagaState:
    r = step.record
    attempts = [
        *step.state.pickup.get("failed_attempts", []),
        {"attempt_no": r["attempt_no"], "reason": r["failure_reason"]},
    ]
    step.notes.append(f"pickup attempt {r['attempt_no']} failed: {r['failure_reason']}")
    return replace(step.state, pickup={**step.state.pickup, "failed_attempts": attempts})


def _pickup_completed(step: _Step) -> SagaState:
    r = step.record
    pickup = {
        **step.state.pickup,
        "booking_id": r["booking_id"],
        "tracking_number": r["tracking_number"],
        "collected_at": r["collected_at"],
        "carrier_noted_damage": r["carrier_noted_damage"],
    }
    return replace(step.state, status=Status.AWAITING_INSPECTION, pickup=pickup)


def _inspection_recorded(step: _Step) -> SagaState:
    r = step.record
    inspection = {
        "scan_id": r["scan_id"],
        "station_id": r["station_id"],
        "inspector_id": r["inspector_id"],
        "items": r["items"],
        "inspected_at": r["inspected_at"],
    }
    step.command("IntakeRequested", {"warehouse_id": DEFAULT_WAREHOUSE, "items": r["items"]})
    return replace(step.state, status=Status.INTAKE_PENDING, inspection=inspection)


def _intake_completed(step: _Step) -> SagaState:
    state = step.state
    breakdown = refund_for_lines(state.request["lines"])
    attempt = 1
    step.command(
        "RefundRequested",
        {
            "amount": breakdown.total.to_record(),
            "method": state.request["payment_method"],
            "lines": breakdown.line_records(),
            "idempotency_key": f"{state.return_id}-refund-{attempt}",
        },
        attempt=attempt,
    )
    intake = {"warehouse_id": step.record["warehouse_id"], "movements": step.record["movements"]}
    refund = {
        "amount": breakdown.total.to_record(),
        "method": state.request["payment_method"],
        "lines": breakdown.line_records(),
        "status": "REQUESTED",
        "attempt": attempt,
    }
    return replace(state, status=Status.REFUND_PENDING, intake=intake, refund=refund)


def _refund_issued(step: _Step) -> SagaState:
    r = step.record
    refund = {
        **step.state.refund,
        "status": r["status"],
        "provider": r["provider"],
        "provider_refund_id": r["provider_refund_id"],
        "amount": r["amount"],
        "issued_at": step.envelope["occurred_at"],
    }
    step.command("ReturnCompleted", {"refunded": r["amount"], "completed_at": step.now_ms})
    return replace(
        step.state, status=Status.COMPLETED, refund=refund, outcome={"outcome": "COMPLETED"}
    )


def _refund_failed(step: _Step) -> SagaState:
    r = step.record
    reason = f"refund failed: {r['decline_code']} {r.get('detail', '')}".strip()
    ticket_id = deterministic_event_id(step.state.return_id, "ticket", "refund-failed")
    step.command(
        "TicketOpened",
        {
            "ticket_id": ticket_id,
            "category": "refund-failed",
            "summary": reason,
            "facts": {
                "decline_code": r["decline_code"],
                "provider": r["provider"],
                "amount_minor": str(r["amount"]["amount_minor"]),
                "currency": r["amount"]["currency"],
                "retryable": str(r["retryable"]).lower(),
            },
        },
    )
    step.command(
        "ReturnFailed", {"outcome": "NEEDS_ATTENTION", "failed_step": "REFUND", "reason": reason}
    )
    refund = {**step.state.refund, "status": "FAILED", "decline_code": r["decline_code"]}
    return replace(
        step.state,
        status=Status.NEEDS_ATTENTION,
        refund=refund,
        outcome={"outcome": "NEEDS_ATTENTION", "reason": reason, "ticket_id": ticket_id},
    )


def _late_pickup_info(step: _Step) -> SagaState:
    """A PickupScheduled that arrives after the parcel was collected: keep its details."""
    step.notes.append("late pickup details recorded")
    return _pickup_scheduled(step)


_HANDLERS = {
    (Status.NEW, "ReturnRequested"): _requested,
    (Status.REQUESTED, "ReturnAccepted"): _accepted,
    (Status.REQUESTED, "ReturnRejected"): _rejected,
    (Status.PICKUP_PENDING, "PickupScheduled"): _pickup_scheduled,
    (Status.PICKUP_PENDING, "PickupAttemptFailed"): _pickup_attempt_failed,
    (Status.PICKUP_SCHEDULED, "PickupAttemptFailed"): _pickup_attempt_failed,
    (Status.PICKUP_PENDING, "PickupCompleted"): _pickup_completed,
    (Status.PICKUP_SCHEDULED, "PickupCompleted"): _pickup_completed,
    (Status.AWAITING_INSPECTION, "InspectionRecorded"): _inspection_recorded,
    (Status.INTAKE_PENDING, "IntakeCompleted"): _intake_completed,
    (Status.REFUND_PENDING, "RefundIssued"): _refund_issued,
    (Status.REFUND_PENDING, "RefundFailed"): _refund_failed,
    # the carrier's callback can overtake the booking confirmation: keep its details
    (Status.AWAITING_INSPECTION, "PickupScheduled"): _late_pickup_info,
    (Status.INTAKE_PENDING, "PickupScheduled"): _late_pickup_info,
    (Status.REFUND_PENDING, "PickupScheduled"): _late_pickup_info,
}

# Everything the coordinator consumes.
CONSUMED_EVENTS = frozenset(
    {
        "ReturnRequested",
        "ReturnAccepted",
        "ReturnRejected",
        "ReturnCancelled",
        "PickupScheduled",
        "PickupAttemptFailed",
        "PickupCompleted",
        "PickupCancelled",
        "InspectionRecorded",
        "IntakeCompleted",
        "IntakeReversed",
        "RefundIssued",
        "RefundFailed",
        "RefundVoided",
    }
)


def status_view(state: SagaState) -> dict[str, Any]:
    """What `GET /returns/{return_id}` shows."""
    return {
        "return_id": state.return_id,
        "status": str(state.status),
        "step": STEP_OF[state.status],
        "terminal": state.terminal,
        "outcome": state.outcome or None,
        "policy_version": state.policy_version or None,
        "request": state.request or None,
        "pickup": state.pickup or None,
        "inspection": state.inspection or None,
        "intake": state.intake or None,
        "refund": state.refund or None,
        "history": list(state.history),
        "created_at": state.created_at,
        "updated_at": state.updated_at,
    }
