"""The saga's state, statuses and their order, its configuration and one transition's result."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

PRODUCER = "coordinator"
DEFAULT_WAREHOUSE = "WH-RETURNS-1"
HOUR_MS = 3600 * 1000
# Bounds per saga: events remembered for dedupe (a return sees about 15; an older replayed
# event is ignored by the state machine anyway) and history entries kept.
PROCESSED_IDS_KEPT = 64
HISTORY_KEPT = 100
DAY_MS = 24 * HOUR_MS

Command = tuple[str, dict[str, Any]]  # (record name, record)


class Status(StrEnum):
    NEW = "NEW"  # nothing known yet (an event arrived before ReturnRequested)
    REQUESTED = "REQUESTED"
    PICKUP_PENDING = "PICKUP_PENDING"
    PICKUP_SCHEDULED = "PICKUP_SCHEDULED"
    AWAITING_INSPECTION = "AWAITING_INSPECTION"
    INTAKE_PENDING = "INTAKE_PENDING"
    RISK_PENDING = "RISK_PENDING"  # the risk service is asked before money moves
    HELD_FOR_REVIEW = "HELD_FOR_REVIEW"  # no money moves until a reviewer decides
    RESERVING_REFUND = "RESERVING_REFUND"
    AWAITING_BUYER_DETAILS = "AWAITING_BUYER_DETAILS"
    EXCHANGE_CHARGING = "EXCHANGE_CHARGING"  # a dearer variant: the buyer pays the difference
    EXCHANGE_PENDING = "EXCHANGE_PENDING"
    REFUND_PENDING = "REFUND_PENDING"
    # a decided return the buyer disputes: re-inspected at another station or decided by
    # an agent, then any difference paid (decisions/saga/disputes.py)
    DISPUTED = "DISPUTED"
    DISPUTE_REFUND_PENDING = "DISPUTE_REFUND_PENDING"
    CANCELLING = "CANCELLING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    COMPENSATED = "COMPENSATED"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"


TERMINAL = frozenset(
    {
        Status.COMPLETED,
        Status.REJECTED,
        Status.CANCELLED,
        Status.COMPENSATED,
        Status.NEEDS_ATTENTION,
    }
)

# Progress along the forward path, and the point on it where each event is expected.
STATUS_RANK = {
    Status.NEW: 0,
    Status.REQUESTED: 1,
    Status.PICKUP_PENDING: 2,
    Status.PICKUP_SCHEDULED: 3,
    Status.AWAITING_INSPECTION: 4,
    Status.INTAKE_PENDING: 5,
    Status.RISK_PENDING: 6,
    Status.HELD_FOR_REVIEW: 6,
    Status.RESERVING_REFUND: 6,
    Status.AWAITING_BUYER_DETAILS: 6,
    Status.EXCHANGE_CHARGING: 6,
    Status.EXCHANGE_PENDING: 6,
    Status.REFUND_PENDING: 6,
}
# While a pickup is being cancelled the carrier may already have the parcel: the cancel
# then fails and the return goes on, so later steps' events are kept, not dropped.
PARKING_RANK = {**STATUS_RANK, Status.CANCELLING: STATUS_RANK[Status.PICKUP_SCHEDULED]}
EVENT_RANK = {
    "ReturnRequested": 0,
    "ReturnAccepted": 1,
    "ReturnRejected": 1,
    # the buyer's details come on saga.events, the request on returns.events (paused while
    # the coordinator is busy): details that overtake the request wait for it, parked
    "BuyerDetailsProvided": 1,
    "PickupScheduled": 2,
    "PickupAttemptFailed": 2,
    "PickupCompleted": 2,
    "InspectionRecorded": 4,
    "IntakeCompleted": 5,
    "RiskDecided": 6,
    "RiskReviewDecided": 6,
    "RefundReserved": 6,
    "RefundReservationRefused": 6,
    "RefundIssued": 6,
    "RefundSettled": 6,
    "RefundFailed": 6,
    "ReplacementOrderPlaced": 6,
    "ReplacementOutOfStock": 6,
    "ChargeCaptured": 6,
    "ChargeFailed": 6,
}

# The step a status belongs to (SagaStep in events, timers, retries).
STEP_OF = {
    Status.NEW: "REQUEST",
    Status.REQUESTED: "REQUEST",
    Status.PICKUP_PENDING: "PICKUP",
    Status.PICKUP_SCHEDULED: "PICKUP",
    Status.AWAITING_INSPECTION: "INSPECTION",
    Status.INTAKE_PENDING: "INTAKE",
    Status.RISK_PENDING: "RISK",
    Status.HELD_FOR_REVIEW: "RISK",
    Status.RESERVING_REFUND: "REFUND",
    Status.AWAITING_BUYER_DETAILS: "REFUND",
    Status.EXCHANGE_CHARGING: "REFUND",
    Status.EXCHANGE_PENDING: "REFUND",
    Status.REFUND_PENDING: "REFUND",
    Status.DISPUTED: "INSPECTION",
    Status.DISPUTE_REFUND_PENDING: "REFUND",
    Status.CANCELLING: "PICKUP",
    Status.COMPENSATING: "UNKNOWN",
    Status.COMPLETED: "REFUND",
    Status.REJECTED: "REQUEST",
    Status.CANCELLED: "PICKUP",
    Status.COMPENSATED: "UNKNOWN",
    Status.NEEDS_ATTENTION: "UNKNOWN",
}

# Reasons a pickup attempt fails at the buyer's door (rescheduled by the carrier, bounded).
DOORSTEP_FAILURES = frozenset({"BUYER_ABSENT", "PARCEL_NOT_READY", "ADDRESS_NOT_FOUND", "OTHER"})
NOT_CANCELLED_PREFIX = "not-cancelled"
OPERATOR_CANCEL = "cancelled_by_operator"  # a compensation a person asked for
OPERATOR_EVENTS = frozenset({"SagaRetryRequested", "SagaCancelRequested", "SagaResumeRequested"})


@dataclass(frozen=True)
class SagaConfig:
    """Bounds and deadlines (configurable per deployment; the chaos run shortens them)."""

    max_tries: int = 5
    backoff_base_ms: int = 1_000
    backoff_cap_ms: int = 60_000
    pickup_attempt_limit: int = 3
    pickup_reschedule_limit: int = 3  # the buyer's moves of a booked pickup
    booking_deadline_ms: int = 2 * HOUR_MS  # PickupRequested → PickupScheduled
    collection_deadline_ms: int = 7 * DAY_MS  # scheduled → collected
    inspection_deadline_ms: int = 14 * DAY_MS  # collected → inspected
    intake_deadline_ms: int = HOUR_MS
    refund_deadline_ms: int = HOUR_MS  # no answer from the refund service
    # a pending refund must settle by then, or it is compensated (the policy's refund
    # deadline per method, usually shorter, opens a ticket first)
    settlement_deadline_ms: int = 30 * DAY_MS
    buyer_details_deadline_ms: int = 7 * DAY_MS  # the buyer's bank account, for a transfer
    exchange_deadline_ms: int = HOUR_MS  # no answer about the replacement order (or charge)
    decline_retry_limit: int = 3  # refunds asked again after RETRY declines, then fallback
    compensation_deadline_ms: int = HOUR_MS
    # the risk step (1: a decision is asked for after intake, before any money moves; the
    # coordinator turns it on, SAGA_RISK_STEP=0 turns it off): an answer is awaited this
    # long per try; a held return waits this long for a reviewer before a person is told
    risk_step: int = 0
    risk_deadline_ms: int = 30_000
    review_deadline_ms: int = 2 * DAY_MS
    # a finished saga's working state is archived this long after its last change (its
    # summary stays on GET /returns/{id}); past it, events of the return are ignored
    finished_retention_ms: int = 30 * DAY_MS
    # a decided return may be disputed this long after it ended; a dispute not decided
    # (re-inspected or ruled by an agent) this long after it opened goes to a person
    dispute_window_ms: int = 14 * DAY_MS
    dispute_decision_deadline_ms: int = 7 * DAY_MS


DEFAULT_CONFIG = SagaConfig()


@dataclass(frozen=True)
class SagaState:
    return_id: str
    status: Status = Status.NEW
    correlation_id: str = ""
    request: dict[str, Any] = field(default_factory=dict)
    policy_version: str = ""
    policy: dict[str, Any] = field(default_factory=dict)  # effective policy, as accepted
    rules_fired: tuple[dict[str, Any], ...] = ()  # {rule_id, facts, effect, step}
    pickup: dict[str, Any] = field(default_factory=dict)
    inspection: dict[str, Any] = field(default_factory=dict)
    intake: dict[str, Any] = field(default_factory=dict)
    refund: dict[str, Any] = field(default_factory=dict)
    risk: dict[str, Any] = field(default_factory=dict)  # the risk decision and any verdict
    outcome: dict[str, Any] = field(default_factory=dict)
    timer: dict[str, Any] = field(default_factory=dict)  # {id, kind, step, due_at}
    timers_set: int = 0
    tries: dict[str, int] = field(default_factory=dict)  # deliveries of the current command
    compensations: tuple[str, ...] = ()  # registered, in the order their steps ran
    compensation: dict[str, Any] = field(default_factory=dict)  # while compensating
    dispute: dict[str, Any] = field(default_factory=dict)  # the buyer's dispute, once decided
    ended_at: int = 0  # when the saga last reached a final status (the dispute window's start)
    history: tuple[dict[str, Any], ...] = ()
    processed_event_ids: tuple[str, ...] = ()
    last_event_id: str = ""
    parked: tuple[Command, ...] = ()  # events that arrived before their step
    created_at: int = 0
    updated_at: int = 0

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def to_json(self) -> dict[str, Any]:
        """The whole state as JSON (the coordinator stores it split: saga/stored.py). Shallow:
        the state is immutable and never changes a nested value in place, so nothing is
        deep-copied (dataclasses.asdict did: 13-25 % of the coordinator's CPU under load)."""
        data = {name: getattr(self, name) for name in _STATE_FIELDS}
        data["status"] = str(self.status)
        for name in ("history", "processed_event_ids", "compensations", "rules_fired"):
            data[name] = list(getattr(self, name))
        data["parked"] = [[name, record] for name, record in self.parked]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SagaState:
        return cls(
            **{
                **{name: value for name, value in data.items() if name in _STATE_FIELD_SET},
                "status": Status(data["status"]),
                "history": tuple(data.get("history", ())),
                "processed_event_ids": tuple(data.get("processed_event_ids", ())),
                "compensations": tuple(data.get("compensations", ())),
                "rules_fired": tuple(data.get("rules_fired", ())),
                "parked": tuple((name, record) for name, record in data.get("parked", ())),
            }
        )


@dataclass(frozen=True)
class Transition:
    state: SagaState
    commands: tuple[Command, ...]
    duplicate: bool = False
    ignored: bool = False


_STATE_FIELDS = tuple(state_field.name for state_field in fields(SagaState))
_STATE_FIELD_SET = frozenset(_STATE_FIELDS)  # older stored forms may hold more (the outbox)


def changed(state: SagaState, **changes: Any) -> SagaState:
    """`dataclasses.replace` for a saga state, without running `__init__` again: a copy of
    the fields with `changes` over them (SagaState has no `__post_init__` and every field
    is an init field). A step changes its state 4-5 times per event; replace took 10 µs a
    time, this 1.5."""
    unknown = changes.keys() - _STATE_FIELD_SET
    if unknown:
        raise TypeError(f"SagaState has no field(s) {sorted(unknown)}")
    copy = object.__new__(SagaState)
    fields_of_copy = copy.__dict__
    fields_of_copy.update(state.__dict__)
    fields_of_copy.update(changes)
    return copy
