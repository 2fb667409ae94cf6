"""The return saga as a pure transition function: (state, event) -> (new state, commands).

No I/O, no clock: the caller passes `now_ms` and a `SagaConfig`. Every command gets a
deterministic event id derived from the return, the step and the try, so re-emitting it
after a crash yields the same id and downstream consumers deduplicate it. Every event id the
saga has seen is stored with the state it changed; a redelivered event changes nothing, and a
redelivery of the *last* event re-emits that event's commands (the outbox) in case they were
lost in a crash between saving the state and publishing.

Forward path:
  ReturnRequested → REQUESTED
  ReturnAccepted → PICKUP_PENDING            + PickupRequested     (registers: cancel pickup)
  PickupScheduled → PICKUP_SCHEDULED
  PickupCompleted → AWAITING_INSPECTION
  InspectionRecorded → INTAKE_PENDING        + IntakeRequested     (registers: reverse intake)
  IntakeCompleted → RESERVING_REFUND        + RefundReservationRequested
                                                       (registers: release reservation)
  RefundReserved → REFUND_PENDING            + RefundRequested     (registers: void refund)
  RefundIssued → COMPLETED                   + ReturnCompleted     (the pivot: no way back)
    (a PENDING refund waits for RefundSettled, the provider's webhook, before completing)

The order refund ledger (keyed by order_ref) works each return's refund out after every
other live return of the same order, so partial returns of one order add up to exactly what
was paid; units other returns already hold are refused there (a person decides). A return
whose order came without a snapshot goes there with its returned lines: the ledger learns such
an order line by line, so its units are never refunded twice either.

Refund routes:
- A bank-transfer refund without the buyer's account waits in AWAITING_BUYER_DETAILS
  (+ BuyerDetailsRequested) for BuyerDetailsProvided; past the deadline the policy's
  fallback (store credit) pays, or a person does.
- A decline's next action: RETRY asks again with a new idempotency key after a backoff,
  FALLBACK pays by the policy's `decline_fallback` (store credit; recorded as a fallback),
  NEEDS_ATTENTION opens a ticket. A refund that cannot be paid any way compensates.
- An exchange (resolution EXCHANGE) asks for a replacement order after intake instead
  (EXCHANGE_PENDING + ReplacementOrderRequested); out of stock → the policy's
  `exchange_out_of_stock` decides: REFUND (as planned) or STORE_CREDIT. An item the buyer
  damaged (refund REDUCED by the policy) gets no replacement: the reduced refund is paid.

Failures:
- Terminal states carry a reason: COMPLETED, REJECTED (policy or inspection), CANCELLED
  (by the buyer before pickup, or the pickup failed), COMPENSATED (a step failed for good and
  the earlier steps were undone), NEEDS_ATTENTION (a TicketOpened says what a person needs).
- Transient failures (a retryable failure event or a missed deadline) are retried with
  exponential backoff and jitter, at most `max_tries` per step; permanent ones are not.
- Durable timers: the state holds one timer (deadline or retry); the coordinator's timer
  loop turns a due timer into a SagaStepTimedOut event, which is handled here like any event.
- A compensation is registered before its step runs; compensations run in reverse order,
  one at a time, each confirmed by an event and recorded in the history. A refund that has
  succeeded is the pivot: it cannot be compensated, only completed.

Kafka orders a return's events within one topic, not across topics: an event of a later step
that arrives early is parked and applied once the saga reaches its step.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from services.coordinator.refund_plan import order_record_of, plan_refund, refund_lines
from services.eventing.envelope import deterministic_event_id, new_envelope
from services.refund.refund_arithmetic import RefundArithmeticError
from services.warehouse_intake.disposition import weight_far_below_expected

PRODUCER = "coordinator"
DEFAULT_WAREHOUSE = "WH-RETURNS-1"
HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS

Command = tuple[str, dict[str, Any]]  # (record name, record)


class Status(StrEnum):
    NEW = "NEW"  # nothing known yet (an event arrived before ReturnRequested)
    REQUESTED = "REQUESTED"
    PICKUP_PENDING = "PICKUP_PENDING"
    PICKUP_SCHEDULED = "PICKUP_SCHEDULED"
    AWAITING_INSPECTION = "AWAITING_INSPECTION"
    INTAKE_PENDING = "INTAKE_PENDING"
    RESERVING_REFUND = "RESERVING_REFUND"
    AWAITING_BUYER_DETAILS = "AWAITING_BUYER_DETAILS"
    EXCHANGE_PENDING = "EXCHANGE_PENDING"
    REFUND_PENDING = "REFUND_PENDING"
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
    Status.RESERVING_REFUND: 6,
    Status.AWAITING_BUYER_DETAILS: 6,
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
    "PickupScheduled": 2,
    "PickupAttemptFailed": 2,
    "PickupCompleted": 2,
    "InspectionRecorded": 4,
    "IntakeCompleted": 5,
    "RefundReserved": 6,
    "RefundReservationRefused": 6,
    "RefundIssued": 6,
    "RefundSettled": 6,
    "RefundFailed": 6,
    "ReplacementOrderPlaced": 6,
    "ReplacementOutOfStock": 6,
}

# The step a status belongs to (SagaStep in events, timers, retries).
STEP_OF = {
    Status.NEW: "REQUEST",
    Status.REQUESTED: "REQUEST",
    Status.PICKUP_PENDING: "PICKUP",
    Status.PICKUP_SCHEDULED: "PICKUP",
    Status.AWAITING_INSPECTION: "INSPECTION",
    Status.INTAKE_PENDING: "INTAKE",
    Status.RESERVING_REFUND: "REFUND",
    Status.AWAITING_BUYER_DETAILS: "REFUND",
    Status.EXCHANGE_PENDING: "REFUND",
    Status.REFUND_PENDING: "REFUND",
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
    booking_deadline_ms: int = 2 * HOUR_MS  # PickupRequested → PickupScheduled
    collection_deadline_ms: int = 7 * DAY_MS  # scheduled → collected
    inspection_deadline_ms: int = 14 * DAY_MS  # collected → inspected
    intake_deadline_ms: int = HOUR_MS
    refund_deadline_ms: int = HOUR_MS  # no answer from the refund service
    # a pending refund must settle by then, or it is compensated (the policy's refund
    # deadline per method, usually shorter, opens a ticket first)
    settlement_deadline_ms: int = 30 * DAY_MS
    buyer_details_deadline_ms: int = 7 * DAY_MS  # the buyer's bank account, for a transfer
    exchange_deadline_ms: int = HOUR_MS  # no answer about the replacement order
    decline_retry_limit: int = 3  # refunds asked again after RETRY declines, then fallback
    compensation_deadline_ms: int = HOUR_MS

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> SagaConfig:
        """SAGA_MAX_TRIES, SAGA_BACKOFF_BASE_MS, SAGA_<NAME>_MS for every deadline, …"""
        env = dict(os.environ if env is None else env)
        values: dict[str, int] = {}
        for name in cls.__dataclass_fields__:
            key = "SAGA_" + name.upper()
            if key in env:
                values[name] = int(env[key])
        return cls(**values)


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
    outcome: dict[str, Any] = field(default_factory=dict)
    timer: dict[str, Any] = field(default_factory=dict)  # {id, kind, step, due_at}
    timers_set: int = 0
    tries: dict[str, int] = field(default_factory=dict)  # deliveries of the current command
    compensations: tuple[str, ...] = ()  # registered, in the order their steps ran
    compensation: dict[str, Any] = field(default_factory=dict)  # while compensating
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
        """The JSON form stored in the sagas table (once per event). Shallow: the state is
        immutable and never changes a nested value in place, so nothing is deep-copied
        (dataclasses.asdict did: 13-25 % of the coordinator's py-spy samples under load)."""
        data = {name: getattr(self, name) for name in _STATE_FIELDS}
        data["status"] = str(self.status)
        for name in ("history", "processed_event_ids", "compensations", "rules_fired"):
            data[name] = list(getattr(self, name))
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
                "compensations": tuple(data.get("compensations", ())),
                "rules_fired": tuple(data.get("rules_fired", ())),
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

    def __init__(
        self, state: SagaState, name: str, record: dict[str, Any], now_ms: int, config: SagaConfig
    ) -> None:
        self.state = state
        self.name = name
        self.record = record
        self.envelope = record["envelope"]
        self.now_ms = now_ms
        self.config = config
        self.commands: list[Command] = []
        self.notes: list[str] = []

    def command(self, name: str, body: dict[str, Any], *id_parts: str, attempt: int = 1) -> None:
        return_id = self.state.return_id
        envelope = new_envelope(
            name,
            return_id,
            PRODUCER,
            correlation_id=self.state.correlation_id or self.envelope["correlation_id"],
            causation_id=self.envelope["event_id"],
            attempt=attempt,
            event_id=deterministic_event_id(return_id, "command", name, *id_parts),
            occurred_at=self.now_ms,
        )
        self.commands.append((name, {"envelope": envelope, **body}))


# ---------------------------------------------------------------- entry point


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
        replay = state.outbox if event_id == state.last_event_id else ()
        return Transition(state, replay, duplicate=True)

    state, commands, outcome = _apply(state, name, record, now_ms, config)
    if outcome == "applied":
        state, more = _apply_parked(state, now_ms, config)
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
    state: SagaState,
    name: str,
    record: dict[str, Any],
    now_ms: int,
    config: SagaConfig,
    unparked: bool = False,
) -> tuple[SagaState, list[Command], str]:
    """Handle one event: applied, parked (it belongs to a later step) or ignored."""
    step = _Step(state, name, record, now_ms, config)
    handler = _HANDLERS.get((state.status, name))
    if handler is not None:
        if unparked:
            step.notes.append("arrived before its step; applied now")
        new_state = handler(step)
        if new_state is not None:
            return _with_history(step, new_state), step.commands, "applied"
    elif not state.terminal and EVENT_RANK.get(name, -1) > PARKING_RANK.get(state.status, 99):
        step.notes.append(f"{name} arrived before its step (state {state.status}); parked")
        parked = replace(state, parked=(*state.parked, (name, record)))
        return _with_history(step, parked, parked_event=True), [], "parked"
    if not step.notes and name in OPERATOR_EVENTS:
        step.notes.append(f"{name} does not apply to a saga in {state.status}")
    if not step.notes:
        step.notes.append(f"unexpected {name} in state {state.status}")
    return _with_history(step, state, ignored=True), [], "ignored"


def _apply_parked(state: SagaState, now_ms: int, config: SagaConfig) -> tuple[SagaState, list]:
    commands: list[Command] = []
    progressed = True
    while progressed and state.parked:
        progressed = False
        for index, (name, record) in enumerate(state.parked):
            if (state.status, name) in _HANDLERS:
                rest = state.parked[:index] + state.parked[index + 1 :]
                state, more, _ = _apply(
                    replace(state, parked=rest), name, record, now_ms, config, True
                )
                commands += more
                progressed = True
                break
        if state.terminal:
            state = replace(state, parked=())
    return state, commands


def _with_history(
    step: _Step, new_state: SagaState, ignored: bool = False, parked_event: bool = False
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
    if new_state.timer != old.timer and new_state.timer:
        entry["timer"] = new_state.timer
    if ignored:
        entry["ignored"] = True
    if parked_event:
        entry["parked"] = True
    if new_state.terminal:
        new_state = replace(new_state, timer={})
    return replace(new_state, history=(*old.history, entry))


# ---------------------------------------------------------------- timers and retries


def _set_timer(step: _Step, state: SagaState, kind: str, delay_ms: int) -> SagaState:
    number = state.timers_set + 1
    stage = str(state.status)
    timer = {
        "id": f"{kind}-{stage}-{number}",
        "kind": kind,
        "step": STEP_OF[state.status],
        "stage": stage,
        "due_at": step.now_ms + delay_ms,
    }
    return replace(state, timer=timer, timers_set=number)


def _deadline(step: _Step, state: SagaState, delay_ms: int) -> SagaState:
    return _set_timer(step, state, "deadline", delay_ms)


def backoff_ms(config: SagaConfig, return_id: str, stage: str, tries: int) -> int:
    """Exponential backoff with deterministic jitter (50–150 %): pure and repeatable."""
    base = min(config.backoff_cap_ms, config.backoff_base_ms * 2 ** max(0, tries - 1))
    digest = hashlib.sha256(f"{return_id}/{stage}/{tries}".encode()).digest()
    jitter_permille = 500 + int.from_bytes(digest[:2], "big") % 1001
    return base * jitter_permille // 1000


def _tries(state: SagaState, stage: str) -> int:
    return state.tries.get(stage, 0)


def _count_try(state: SagaState, stage: str) -> SagaState:
    return replace(state, tries={**state.tries, stage: _tries(state, stage) + 1})


def _retry_later(step: _Step, state: SagaState, why: str) -> SagaState:
    """A transient failure: count it and set a retry timer (the caller checks the bound)."""
    stage = str(state.status)
    state = _count_try(state, stage)
    delay = backoff_ms(step.config, state.return_id, stage, _tries(state, stage))
    step.notes.append(
        f"{why}; retry {_tries(state, stage)} of {step.config.max_tries - 1} in {delay} ms"
    )
    return _set_timer(step, state, "retry", delay)


def _exhausted(step: _Step, state: SagaState) -> bool:
    return _tries(state, str(state.status)) + 1 >= step.config.max_tries


# ---------------------------------------------------------------- commands of each step


def _request_pickup(step: _Step, state: SagaState) -> SagaState:
    tries = _tries(state, str(Status.PICKUP_PENDING))
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
    return _deadline(step, state, step.config.booking_deadline_ms)


def _request_intake(step: _Step, state: SagaState) -> SagaState:
    tries = _tries(state, str(Status.INTAKE_PENDING))
    step.command(
        "IntakeRequested",
        {"warehouse_id": DEFAULT_WAREHOUSE, "items": state.inspection["items"]},
        str(tries + 1),
        attempt=tries + 1,
    )
    return _deadline(step, state, step.config.intake_deadline_ms)


def _request_refund(step: _Step, state: SagaState) -> SagaState:
    """Re-sent with the same idempotency key until the provider answers for good: a retry
    after a lost answer must find the first refund, never make a second one."""
    tries = _tries(state, str(Status.REFUND_PENDING))
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
    return _deadline(step, state, step.config.refund_deadline_ms)


def _refund_account(state: SagaState) -> dict[str, str] | None:
    if state.refund.get("method") != "BANK_TRANSFER":
        return None
    return state.request.get("refund_account") or None


def _request_reservation(step: _Step, state: SagaState) -> SagaState:
    """Ask the order refund ledger (keyed by order_ref) for this return's share of its order;
    asked again with the same key after a lost answer, it answers what it reserved."""
    tries = _tries(state, str(Status.RESERVING_REFUND))
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
    return _deadline(step, state, step.config.refund_deadline_ms)


def _request_replacement(step: _Step, state: SagaState) -> SagaState:
    tries = _tries(state, str(Status.EXCHANGE_PENDING))
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
    return _deadline(step, state, step.config.exchange_deadline_ms)


def _cancel_pickup_command(step: _Step, state: SagaState, reason: str, tries: int) -> None:
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


def _ticket(step: _Step, category: str, summary: str, facts: dict[str, str], *instance: str) -> str:
    """One ticket per return and category (and `instance`, where one may come again)."""
    ticket_id = deterministic_event_id(step.state.return_id, "ticket", category, *instance)
    step.command(
        "TicketOpened",
        {"ticket_id": ticket_id, "category": category, "summary": summary, "facts": facts},
        category,
        *instance,
    )
    return ticket_id


def _finish(
    step: _Step,
    state: SagaState,
    status: Status,
    failed_step: str,
    reason: str,
    ticket: tuple[str, dict[str, str]] | None = None,
) -> SagaState:
    """End the saga in a failure state with a reason (and a ticket when a person must act)."""
    outcome: dict[str, Any] = {"outcome": str(status), "reason": reason, "failed_step": failed_step}
    if ticket is not None:
        outcome["ticket_id"] = _ticket(step, ticket[0], reason, ticket[1])
    step.command(
        "ReturnFailed", {"outcome": str(status), "failed_step": failed_step, "reason": reason}
    )
    step.notes.append(reason)
    return replace(state, status=status, outcome=outcome, timer={}, parked=())


def _facts(state: SagaState, **extra: Any) -> dict[str, str]:
    facts = {
        "return_id": state.return_id,
        "status": str(state.status),
        "order_ref": str(state.request.get("order_ref", "")),
        "booking_id": str(state.pickup.get("booking_id", "")),
        "refund_status": str(state.refund.get("status", "")),
    }
    facts.update({k: str(v) for k, v in extra.items()})
    return facts


# ---------------------------------------------------------------- compensation


def _compensate(
    step: _Step, state: SagaState, failed_step: str, reason: str, by_operator: bool = False
) -> SagaState:
    """Undo the steps done so far, last first. Nothing registered → straight to the end.
    `by_operator`: a person cancelled the return, which ends CANCELLED, not COMPENSATED."""
    if state.refund.get("status") == "SUCCEEDED":  # the pivot: money paid, no way back
        return _finish(
            step,
            state,
            Status.NEEDS_ATTENTION,
            failed_step,
            f"{reason}; refund already paid, cannot compensate",
            ("paid-refund-cannot-compensate", _facts(state)),
        )
    pending = list(reversed(state.compensations))
    step.notes.append(f"compensating ({', '.join(pending) or 'nothing to undo'}): {reason}")
    state = replace(
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
    return _next_compensation(step, state)


def _next_compensation(step: _Step, state: SagaState) -> SagaState:
    comp = dict(state.compensation)
    while comp["pending"]:
        action = comp["pending"][0]
        tries = _tries(state, str(Status.COMPENSATING))
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
            _cancel_pickup_command(step, state, comp["reason"], tries)
        state = replace(state, compensation=comp)
        return _deadline(step, state, step.config.compensation_deadline_ms)
    reason = comp["reason"]
    state = replace(state, compensation=comp)
    if comp.get(OPERATOR_CANCEL):
        return _finish(
            step,
            state,
            Status.CANCELLED,
            comp["failed_step"],
            reason,
            ("cancelled-by-operator", _facts(state, undone=",".join(comp["done"]))),
        )
    return _finish(
        step,
        state,
        Status.COMPENSATED,
        comp["failed_step"],
        reason,
        ("compensated", _facts(state, undone=",".join(comp["done"]))),
    )


def _skip(comp: dict[str, Any], action: str, why: str) -> dict[str, Any]:
    return {**comp, "pending": comp["pending"][1:], "done": [*comp["done"], f"{action} ({why})"]}


def _compensation_confirmed(action: str):
    def handle(step: _Step) -> SagaState | None:
        state = step.state
        comp = state.compensation
        if not comp["pending"] or comp["pending"][0] != action:
            return None  # not the compensation we are waiting for
        note = step.record.get("reason", "")
        comp = {**comp, "pending": comp["pending"][1:], "done": [*comp["done"], action]}
        step.notes.append(f"compensation {action} confirmed{': ' + note if note else ''}")
        state = replace(
            state, compensation=comp, tries={**state.tries, str(Status.COMPENSATING): 0}
        )
        if action == "void-refund":
            state = replace(state, refund={**state.refund, "status": "VOIDED"})
        return _next_compensation(step, state)

    return handle


# ---------------------------------------------------------------- forward handlers


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
        "order": r.get("order"),
        "store_credit_chosen": r.get("store_credit_chosen", False),
        "photo_refs": r.get("photo_refs", []),
        "resolution": r.get("resolution") or "REFUND",
        "exchange_sku": r.get("exchange_sku"),
        "refund_account": r.get("refund_account"),
    }
    return replace(
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


def _accepted(step: _Step) -> SagaState:
    r = step.record
    policy_json = r.get("policy_json")
    request = step.state.request
    if r.get("reason_family"):
        request = {**request, "reason_family": r["reason_family"]}
    state = replace(
        step.state,
        status=Status.PICKUP_PENDING,
        policy_version=r["policy_version"],
        policy=json.loads(policy_json) if policy_json else {},
        request=request,
        rules_fired=(*step.state.rules_fired, *_decision_rules(r, "REQUEST")),
        compensations=(*step.state.compensations, "cancel-pickup"),  # registered before the step
    )
    return _request_pickup(step, state)


def _rejected(step: _Step) -> SagaState:
    reason = f"{step.record['rejection_code']}: {step.record['detail']}"
    state = replace(
        step.state,
        policy_version=step.record.get("policy_version", ""),
        rules_fired=(*step.state.rules_fired, *_decision_rules(step.record, "REQUEST")),
    )
    return _finish(step, state, Status.REJECTED, "REQUEST", reason)


def _cancelled_before_booking(step: _Step) -> SagaState:
    reason = f"cancelled by {step.record['cancelled_by']}: {step.record['reason']}"
    return _finish(step, step.state, Status.CANCELLED, "REQUEST", reason)


def _cancel_pickup(step: _Step, state: SagaState, reason: str) -> SagaState:
    step.notes.append(reason)
    state = replace(
        state,
        status=Status.CANCELLING,
        outcome={"reason": reason},
        tries={**state.tries, str(Status.CANCELLING): 0},
    )
    _cancel_pickup_command(step, state, reason, 0)
    return _deadline(step, state, step.config.booking_deadline_ms)


def _buyer_cancelled(step: _Step) -> SagaState:
    reason = f"cancelled by {step.record['cancelled_by']}: {step.record['reason']}"
    return _cancel_pickup(step, step.state, reason)


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
    state = replace(step.state, pickup=pickup)
    if state.status != Status.PICKUP_PENDING:
        step.notes.append("pickup details recorded")
        return state
    state = replace(state, status=Status.PICKUP_SCHEDULED)
    return _deadline(step, state, step.config.collection_deadline_ms)


def _pickup_attempt_failed(step: _Step) -> SagaState | None:
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
        if _exhausted(step, state):
            return _finish(
                step,
                state,
                Status.CANCELLED,
                "PICKUP",
                f"carrier unavailable after {step.config.max_tries} tries: {r['detail']}",
            )
        return _retry_later(step, state, f"carrier error: {r['detail']}")
    attempts = [
        *state.pickup.get("failed_attempts", []),
        {"attempt_no": r["attempt_no"], "reason": r["failure_reason"]},
    ]
    state = replace(state, pickup={**state.pickup, "failed_attempts": attempts})
    step.notes.append(f"pickup attempt {r['attempt_no']} failed: {r['failure_reason']}")
    if len(attempts) >= step.config.pickup_attempt_limit:
        return _cancel_pickup(
            step, state, f"pickup failed {len(attempts)} times ({r['failure_reason']})"
        )
    return state


def _pickup_completed(step: _Step) -> SagaState:
    r = step.record
    pickup = {
        **step.state.pickup,
        "booking_id": r["booking_id"],
        "tracking_number": r["tracking_number"],
        "collected_at": r["collected_at"],
        "carrier_noted_damage": r["carrier_noted_damage"],
    }
    state = replace(step.state, status=Status.AWAITING_INSPECTION, pickup=pickup)
    return _deadline(step, state, step.config.inspection_deadline_ms)


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


def _inspection_recorded(step: _Step) -> SagaState:
    r = step.record
    inspection = {
        "scan_id": r["scan_id"],
        "station_id": r["station_id"],
        "inspector_id": r["inspector_id"],
        "items": r["items"],
        "inspected_at": r["inspected_at"],
    }
    state = step.state
    problem = inspection_problem(r["items"])
    if not problem:
        try:
            plan = plan_refund(
                state.request,
                state.policy,
                r["items"],
                bool(state.pickup.get("carrier_noted_damage")),
            )
        except (RefundArithmeticError, KeyError, ValueError) as exc:
            inspection["refund_problem"] = f"the refund cannot be worked out: {exc}"
            step.notes.append(inspection["refund_problem"])
        else:
            problem = plan.rejection
            inspection["refund_plan"] = plan.refund
            rules = tuple({**rule, "step": "INSPECTION"} for rule in plan.rules)
            state = replace(state, rules_fired=(*state.rules_fired, *rules))
    if problem:
        inspection["rejection"] = problem
        step.notes.append(f"inspection rejects the return: {problem}; item to quarantine")
    state = replace(
        state,
        status=Status.INTAKE_PENDING,
        inspection=inspection,
        compensations=(*state.compensations, "reverse-intake"),
    )
    return _request_intake(step, state)


def _intake_completed(step: _Step) -> SagaState:
    state = replace(
        step.state,
        intake={"warehouse_id": step.record["warehouse_id"], "movements": step.record["movements"]},
    )
    rejection = state.inspection.get("rejection")
    if rejection:
        return _finish(
            step,
            state,
            Status.REJECTED,
            "INSPECTION",
            rejection,
            ("inspection-rejected", _facts(state, scan_id=state.inspection["scan_id"])),
        )
    problem = state.inspection.get("refund_problem")
    if problem:
        return _finish(
            step,
            state,
            Status.NEEDS_ATTENTION,
            "REFUND",
            problem,
            ("refund-not-computable", _facts(state, problem=problem)),
        )
    if _reserves_with_the_order(state):
        state = replace(
            state,
            status=Status.RESERVING_REFUND,
            compensations=(*state.compensations, "release-reservation"),
        )
        return _request_reservation(step, state)
    return _refund_or_exchange(step, state)


def _reserves_with_the_order(state: SagaState) -> bool:
    """Plans decided by a policy go through the order refund ledger, with the order's
    snapshot or, without one, its returned lines (plans from before policies travelled with
    returns refund as planned)."""
    plan = state.inspection.get("refund_plan") or {}
    return bool(plan.get("fee_terms") and plan.get("returning"))


def _refund_or_exchange(step: _Step, state: SagaState) -> SagaState:
    if state.request.get("resolution") == "EXCHANGE" and state.request.get("exchange_sku"):
        liability = _planned_refund(state).get("liability") or {}
        if liability.get("refund") != "REDUCED":
            step.notes.append(f"exchange: replacement {state.request['exchange_sku']} requested")
            return _request_replacement(step, replace(state, status=Status.EXCHANGE_PENDING))
        # a full replacement for an item the buyer damaged would undo the policy's deduction
        state = _rule(
            state,
            "exchange_refused",
            {"exchange_sku": state.request["exchange_sku"], "liable": liability.get("liable")},
            "item damaged by the buyer: no replacement, the reduced refund is paid instead",
        )
    return _start_refund(step, state, _planned_refund(state))


def _refund_reserved(step: _Step) -> SagaState:
    r = step.record
    state = step.state
    plan = dict(state.inspection["refund_plan"])
    currency = r["amount"]["currency"]
    if r["amount"] != plan["amount"]:
        step.notes.append(
            f"the order's other returns ({', '.join(r['other_returns'])}) change the refund "
            f"from {plan['amount']['amount_minor']} to {r['amount']['amount_minor']} {currency}"
        )
    plan.update(
        {
            "amount": r["amount"],
            "lines": refund_lines(r["breakdown"]),
            "breakdown": list(r["breakdown"]),
            "notes": list(r.get("notes") or ()),
            "order_reserved_minor": r["order_reserved_minor"],
            "other_returns": list(r["other_returns"]),
        }
    )
    state = replace(
        state,
        inspection={**state.inspection, "refund_plan": plan},
        timer={},
        tries={**state.tries, str(Status.RESERVING_REFUND): 0},
    )
    if r["other_returns"]:
        state = _rule(
            state,
            "order_refund_ledger",
            {
                "other_returns": list(r["other_returns"]),
                "order_paid_minor": r["order_paid_minor"],
                "order_reserved_minor": r["order_reserved_minor"],
            },
            f"worked out after {len(r['other_returns'])} earlier return(s) of the order: "
            f"{r['amount']['amount_minor']} {currency}",
        )
    return _refund_or_exchange(step, state)


def _reservation_refused(step: _Step) -> SagaState:
    r = step.record
    reason = f"the order refund ledger refused the refund: {r['reason']}"
    return _finish(
        step,
        replace(step.state, timer={}),
        Status.NEEDS_ATTENTION,
        "REFUND",
        reason,
        ("refund-units-already-returned", _facts(step.state, held_by=",".join(r["held_by"]))),
    )


def _planned_refund(state: SagaState) -> dict[str, Any]:
    # A saga inspected before plans were made at inspection gets the old arithmetic
    # (plan_refund without a policy).
    return (
        state.inspection.get("refund_plan")
        or plan_refund(state.request, {}, state.inspection.get("items", []), False).refund
    )


def _start_refund(
    step: _Step, state: SagaState, plan: dict[str, Any], attempt: int = 1
) -> SagaState:
    if plan["amount"]["amount_minor"] == 0:  # free items, or fees ate it all
        step.notes.append("refund total is zero: nothing to pay")
        step.command("ReturnCompleted", {"refunded": plan["amount"], "completed_at": step.now_ms})
        return replace(
            state,
            status=Status.COMPLETED,
            refund={**plan, "status": "NOTHING_TO_PAY"},
            outcome={"outcome": "COMPLETED"},
            timer={},
        )
    refund = _attempt_fields(step, state, plan, plan["method"])
    state = replace(state, refund={**refund, "status": "REQUESTED", "attempt": attempt})
    if plan["method"] == "BANK_TRANSFER" and not state.request.get("refund_account"):
        return _await_buyer_details(step, state)
    state = replace(
        state,
        status=Status.REFUND_PENDING,
        compensations=(*state.compensations, "void-refund"),
    )
    return _request_refund(step, state)


# what one money attempt learnt of its provider; a new attempt starts without it
ATTEMPT_ONLY = (
    "provider",
    "provider_refund_id",
    "settles_at",
    "issued_at",
    "settled_at",
    "pending_since",
    "overdue_ticket",
)


def _attempt_fields(
    step: _Step, state: SagaState, base: dict[str, Any], method: str
) -> dict[str, Any]:
    """A money attempt by `method`: the refund fields without the last attempt's provider
    details, with the policy's refund deadline for the method. The same method keeps its
    due date (a retry does not move the promise); another method is due `deadline_days`
    from now."""
    fields = {k: v for k, v in base.items() if k not in ATTEMPT_ONLY} | {"method": method}
    table = (state.policy.get("rules") or {}).get("refund_deadline_days")
    if isinstance(table, dict) and method in table:
        fields["deadline_days"] = int(table[method])
    kept = state.refund.get("due_by") if state.refund.get("method") == method else None
    due_by = kept or _due_by(step, fields.get("deadline_days"))
    fields.pop("due_by", None)
    return fields | ({"due_by": due_by} if due_by else {})


def _due_by(step: _Step, days: int | None) -> int | None:
    """The policy's refund deadline for the method, counted from now."""
    return None if days is None else step.now_ms + days * DAY_MS


def _wait_for_settlement(step: _Step, state: SagaState) -> SagaState:
    """A pending refund waits for its webhook: past the policy's deadline a person is asked
    to chase it (the refund is not undone: the money may be on its way); past the
    coordinator's settlement deadline it is compensated."""
    cap_at = state.refund["pending_since"] + step.config.settlement_deadline_ms
    due_by = state.refund.get("due_by")
    if due_by and not state.refund.get("overdue_ticket") and due_by < cap_at:
        if due_by <= step.now_ms:
            return _refund_overdue(step, state)
        return _deadline(step, state, due_by - step.now_ms)
    return _deadline(step, state, max(0, cap_at - step.now_ms))


def _refund_overdue(step: _Step, state: SagaState) -> SagaState:
    refund = state.refund
    days = refund.get("deadline_days")
    why = (
        f"refund by {refund['method']} still pending {days} day(s) after it was decided "
        f"(policy deadline): ask {refund.get('provider') or 'the provider'} where it is"
    )
    ticket_id = _ticket(
        step,
        "refund-overdue",
        why,
        _facts(state, method=refund["method"], due_by=refund["due_by"]),
        str(refund.get("attempt", 1)),
    )
    step.notes.append(why)
    state = _rule(
        state,
        "refund_deadline_days",
        {"method": refund["method"], "deadline_days": days, "due_by": refund["due_by"]},
        f"overdue: ticket {ticket_id} opened, still waiting for the settlement",
    )
    state = replace(state, refund={**refund, "overdue_ticket": ticket_id})
    return _wait_for_settlement(step, state)


def _await_buyer_details(step: _Step, state: SagaState) -> SagaState:
    deadline_at = step.now_ms + step.config.buyer_details_deadline_ms
    step.notes.append("a bank transfer needs the buyer's account: asked the buyer")
    step.command("BuyerDetailsRequested", {"needed": "refund_account", "deadline_at": deadline_at})
    return _deadline(
        step,
        replace(state, status=Status.AWAITING_BUYER_DETAILS),
        step.config.buyer_details_deadline_ms,
    )


def _buyer_details_provided(step: _Step) -> SagaState:
    account = step.record["refund_account"]
    state = replace(step.state, request={**step.state.request, "refund_account": account})
    if state.status != Status.AWAITING_BUYER_DETAILS:
        step.notes.append("the buyer's bank account is kept for the refund")
        return state
    step.notes.append("the buyer gave a bank account: refund requested")
    due_by = _due_by(step, state.refund.get("deadline_days"))  # the buyer's wait not counted
    state = replace(
        state,
        status=Status.REFUND_PENDING,
        timer={},
        compensations=(*state.compensations, "void-refund"),
        refund=state.refund | ({"due_by": due_by} if due_by else {}),
    )
    return _request_refund(step, state)


def _rule(state: SagaState, rule_id: str, facts: dict[str, Any], effect: str) -> SagaState:
    fired = {"rule_id": rule_id, "facts": facts, "effect": effect, "step": "REFUND"}
    return replace(state, rules_fired=(*state.rules_fired, fired))


def _fall_back(step: _Step, state: SagaState, why: str, decline_code: str) -> SagaState:
    """Pay by the policy's fallback method (store credit) instead, recorded as a fallback;
    with no fallback left the refund has failed for good and the return is compensated."""
    fallback = str((state.policy.get("rules") or {}).get("decline_fallback") or "NONE")
    method = state.refund.get("method")
    if fallback == "NEEDS_ATTENTION":
        return _finish(
            step,
            state,
            Status.NEEDS_ATTENTION,
            "REFUND",
            f"{why}: the policy leaves the refund to a person",
            ("refund-declined", _facts(state, decline_code=decline_code)),
        )
    if fallback != "STORE_CREDIT" or method == "STORE_CREDIT":
        return _compensate(step, state, "REFUND", f"{why}; no fallback left ({fallback})")
    state = _rule(
        state,
        "decline_fallback",
        {"method": method, "decline_code": decline_code, "fallback": fallback},
        f"{why}: refunded as store credit instead (policy)",
    )
    attempt = state.refund.get("attempt", 1) + 1
    refund = {
        **_attempt_fields(step, state, state.refund, "STORE_CREDIT"),
        "attempt": attempt,
        "status": "REQUESTED",
        "fallback": {"from": method, "decline_code": decline_code, "reason": why},
    }
    step.notes.append(f"{why}: falling back to STORE_CREDIT (refund attempt {attempt})")
    state = replace(
        state,
        status=Status.REFUND_PENDING,
        refund=refund,
        tries={**state.tries, str(Status.REFUND_PENDING): 0},
    )
    if "void-refund" not in state.compensations:
        state = replace(state, compensations=(*state.compensations, "void-refund"))
    return _request_refund(step, state)


def _replacement_placed(step: _Step) -> SagaState:
    r = step.record
    step.notes.append(f"replacement order {r['replacement_order_id']} placed: nothing to refund")
    step.command("ReturnCompleted", {"refunded": None, "completed_at": step.now_ms})
    return replace(
        step.state,
        status=Status.COMPLETED,
        outcome={
            "outcome": "COMPLETED",
            "resolution": "EXCHANGE",
            "replacement_order_id": r["replacement_order_id"],
        },
        timer={},
    )


def _replacement_out_of_stock(step: _Step) -> SagaState:
    r = step.record
    choice = str((step.state.policy.get("rules") or {}).get("exchange_out_of_stock") or "REFUND")
    plan = _planned_refund(step.state)
    if choice == "STORE_CREDIT":
        plan = {**plan, "method": "STORE_CREDIT"}
    state = _rule(
        replace(step.state, timer={}),
        "exchange_out_of_stock",
        {"sku": r["sku"], "available": r["available"], "choice": choice},
        f"replacement {r['sku']} out of stock: refunded to {plan['method']} (policy)",
    )
    step.notes.append(f"replacement {r['sku']} out of stock: refund to {plan['method']}")
    return _start_refund(step, state, plan)


def _earlier_attempt(step: _Step) -> bool:
    """A result for an earlier refund attempt (e.g. a decline re-sent after the saga fell
    back to store credit) says nothing about the current one."""
    key = step.record.get("idempotency_key") or ""
    current = f"{step.state.return_id}-refund-{step.state.refund.get('attempt', 1)}"
    if key and key != current:
        step.notes.append(f"answer for an earlier refund attempt ({key}) ignored")
        return True
    return False


def _refund_issued(step: _Step) -> SagaState | None:
    if _earlier_attempt(step):
        return None
    r = step.record
    refund = {
        **step.state.refund,
        "status": r["status"],
        "provider": r["provider"],
        "provider_refund_id": r["provider_refund_id"],
        "amount": r["amount"],
        "issued_at": step.envelope["occurred_at"],
    }
    if r.get("schedule"):
        currency = r["amount"]["currency"]
        refund["bnpl_schedule"] = [{**i, "currency": currency} for i in r["schedule"]]
        refund["refunded_to_buyer_minor"] = r.get("refunded_to_buyer_minor")
    if r.get("settles_at"):
        refund["settles_at"] = r["settles_at"]
    state = replace(step.state, refund=refund)
    if r["status"] == "PENDING":
        if state.refund.get("settled_at"):  # its webhook came first
            return _complete_refund(step, replace(state, refund={**refund, "status": "SUCCEEDED"}))
        step.notes.append("refund pending at the provider; waiting for settlement")
        since = refund.get("pending_since") or step.now_ms  # a re-sent answer keeps it
        state = replace(state, refund={**refund, "pending_since": since})
        return _wait_for_settlement(step, state)
    return _complete_refund(step, state)


def _complete_refund(step: _Step, state: SagaState) -> SagaState:
    step.command(
        "ReturnCompleted", {"refunded": state.refund["amount"], "completed_at": step.now_ms}
    )
    return replace(state, status=Status.COMPLETED, outcome={"outcome": "COMPLETED"}, timer={})


def _refund_settled(step: _Step) -> SagaState | None:
    r = step.record
    known = step.state.refund.get("provider_refund_id")
    if known and known != r["provider_refund_id"]:
        step.notes.append(f"settlement of another refund ({r['provider_refund_id']}) ignored")
        return None
    refund = {
        **step.state.refund,
        "provider": r["provider"],
        "provider_refund_id": r["provider_refund_id"],
        "settled_at": r["settled_at"],
    }
    if step.state.refund.get("status") != "PENDING":
        # the webhook overtook the service's own answer: keep it, RefundIssued completes
        step.notes.append("settlement arrived before the refund's answer; kept")
        return replace(step.state, refund=refund)
    step.notes.append("the provider settled the pending refund")
    return _complete_refund(step, replace(step.state, refund={**refund, "status": "SUCCEEDED"}))


def _refund_failed(step: _Step) -> SagaState | None:
    if _earlier_attempt(step):
        return None
    r = step.record
    state = replace(step.state, refund={**step.state.refund, "last_error": r["decline_code"]})
    action = r.get("next_action") or ""
    if r["retryable"]:
        if _exhausted(step, state):
            return _compensate(
                step,
                state,
                "REFUND",
                f"refund failed {step.config.max_tries} times: {r['decline_code']}",
            )
        return _retry_later(step, state, f"refund failed transiently: {r['decline_code']}")
    why = f"refund declined: {r['decline_code']}"
    declines = [*state.refund.get("declines", []), r["decline_code"]]
    state = replace(
        state,
        refund={
            **state.refund,
            "status": "DECLINED",
            "decline_code": r["decline_code"],
            "declines": declines,
        },
    )
    if action == "RETRY":
        if len(declines) > step.config.decline_retry_limit:
            return _fall_back(step, state, f"{why} {len(declines)} times", r["decline_code"])
        attempt = state.refund.get("attempt", 1) + 1
        state = replace(
            state,
            refund={**state.refund, "attempt": attempt, "status": "REQUESTED"},
            tries={**state.tries, str(Status.REFUND_PENDING): 0},
        )
        stage = str(Status.REFUND_PENDING)
        delay = backoff_ms(step.config, state.return_id, f"{stage}-declined", len(declines))
        step.notes.append(f"{why}; asked again as refund attempt {attempt} in {delay} ms")
        return _set_timer(step, state, "retry", delay)
    if action == "FALLBACK":
        return _fall_back(step, state, why, r["decline_code"])
    if action == "NEEDS_ATTENTION":
        return _finish(
            step,
            state,
            Status.NEEDS_ATTENTION,
            "REFUND",
            f"{why}: a person must decide",
            ("refund-declined", _facts(state, decline_code=r["decline_code"])),
        )
    return _compensate(step, state, "REFUND", why)  # events from before next_action existed


def _cancel_confirmed(step: _Step) -> SagaState:
    reason = step.state.outcome.get("reason", "cancelled")
    if step.record["reason"].startswith(NOT_CANCELLED_PREFIX):
        # Forward recovery: the courier was faster; the parcel is on its way, so the
        # return goes on (inspection decides) instead of being cancelled.
        step.notes.append(
            f"{reason}; too late: the carrier had collected the parcel, return goes on"
        )
        state = replace(step.state, outcome={}, status=Status.AWAITING_INSPECTION)
        if not state.pickup.get("collected_at"):
            # The carrier has the parcel but its collection callback never reached us
            # (waiting for it again and cancelling again looped: the carrier repeats the
            # same answer). The warehouse scan or the inspection deadline decides.
            step.notes.append("collection not reported yet: waiting for the warehouse scan")
        return _deadline(step, state, step.config.inspection_deadline_ms)
    if any(name == "InspectionRecorded" for name, _ in step.state.parked):
        # The carrier says it never collected, yet the warehouse scanned the parcel.
        return _finish(
            step,
            step.state,
            Status.NEEDS_ATTENTION,
            "PICKUP",
            "the carrier confirmed the cancellation but the parcel was inspected at the "
            "warehouse: check where the item is before closing the return",
        )
    return _finish(step, step.state, Status.CANCELLED, "PICKUP", reason)


def _collected_while_cancelling(step: _Step) -> SagaState:
    step.notes.append("the carrier collected the parcel while we were cancelling")
    return replace(
        step.state, pickup={**step.state.pickup, "collected_at": step.record["collected_at"]}
    )


def _collection_reported_late(step: _Step) -> SagaState | None:
    if step.state.pickup.get("collected_at"):
        return None  # known already: nothing to change
    step.notes.append("the carrier's collection report arrived after its cancellation answer")
    return replace(
        step.state, pickup={**step.state.pickup, "collected_at": step.record["collected_at"]}
    )


def _too_late_to_cancel(step: _Step) -> None:
    step.notes.append("cancellation refused: the parcel has already been collected")
    return None


def _refund_paid_while_compensating(step: _Step) -> SagaState:
    """Forward recovery: the provider paid after all (its answer was late). Money moved, so
    the return cannot be undone: a person reconciles stock with the refund."""
    r = step.record
    state = replace(
        step.state,
        refund={
            **step.state.refund,
            "status": r.get("status", "SUCCEEDED"),  # RefundSettled: the money arrived
            "provider_refund_id": r["provider_refund_id"],
        },
    )
    if r.get("status") == "PENDING" and "void-refund" in state.compensation.get("pending", []):
        return state  # the void will take it back
    return _finish(
        step,
        state,
        Status.NEEDS_ATTENTION,
        "REFUND",
        "refund paid while compensating; stock and refund need reconciling",
        ("refund-paid-during-compensation", _facts(state)),
    )


# ---------------------------------------------------------------- timers


def _timed_out(step: _Step) -> SagaState | None:
    state = step.state
    timer = state.timer
    if not timer or step.record["timer_id"] != timer.get("id"):
        step.notes.append(f"stale timer {step.record['timer_id']}")
        return None
    state = replace(state, timer={})
    status = state.status
    if timer["kind"] == "retry":
        step.notes.append(f"retry timer fired ({timer['id']})")
        return _redo(step, state)
    step.notes.append(f"deadline passed ({timer['id']})")
    if status == Status.PICKUP_SCHEDULED:
        return _cancel_pickup(step, state, "pickup not completed before its deadline")
    if status == Status.AWAITING_INSPECTION:
        return _finish(
            step,
            state,
            Status.NEEDS_ATTENTION,
            "INSPECTION",
            "parcel collected but not inspected before the deadline",
            ("parcel-not-inspected", _facts(state)),
        )
    if status == Status.REFUND_PENDING and state.refund.get("status") == "PENDING":
        since = state.refund.get("pending_since")
        if since and step.now_ms < since + step.config.settlement_deadline_ms:
            # the due date passed, or another timer (an operator's retry) fired first
            return _wait_for_settlement(step, state)
        return _compensate(step, state, "REFUND", "refund still pending after its settlement time")
    if status == Status.AWAITING_BUYER_DETAILS:
        return _fall_back(
            step, state, "the buyer gave no bank account before the deadline", "no_bank_account"
        )
    if _exhausted(step, state):
        return _give_up(step, state)
    state = _count_try(state, str(status))
    return _redo(step, state)


def _redo(step: _Step, state: SagaState) -> SagaState:
    """Send the current step's command again (same idempotency key, next try)."""
    status = state.status
    if status == Status.PICKUP_PENDING:
        return _request_pickup(step, state)
    if status == Status.INTAKE_PENDING:
        return _request_intake(step, state)
    if status == Status.RESERVING_REFUND:
        return _request_reservation(step, state)
    if status == Status.REFUND_PENDING:
        return _request_refund(step, state)
    if status == Status.EXCHANGE_PENDING:
        return _request_replacement(step, state)
    if status == Status.PICKUP_SCHEDULED:  # nothing to send: wait for the collection again
        return _deadline(step, state, step.config.collection_deadline_ms)
    if status == Status.CANCELLING:
        _cancel_pickup_command(
            step, state, state.outcome.get("reason", ""), _tries(state, str(status))
        )
        return _deadline(step, state, step.config.booking_deadline_ms)
    if status == Status.COMPENSATING:
        return _next_compensation(step, state)
    return state


def _give_up(step: _Step, state: SagaState) -> SagaState:
    status = state.status
    tries = step.config.max_tries
    if status == Status.PICKUP_PENDING:
        return _finish(
            step,
            state,
            Status.CANCELLED,
            "PICKUP",
            f"the carrier never confirmed the booking after {tries} tries",
        )
    if status == Status.REFUND_PENDING:
        return _compensate(step, state, "REFUND", f"no refund answer after {tries} tries")
    failed = STEP_OF[status] if status != Status.COMPENSATING else "UNKNOWN"
    return _finish(
        step,
        state,
        Status.NEEDS_ATTENTION,
        failed,
        f"{status} unconfirmed after {tries} tries",
        (f"stuck-{str(status).lower()}", _facts(state)),
    )


# ---------------------------------------------------------------- a person steers the saga

NOTHING_TO_RESEND = {
    Status.NEW: "the return request",
    Status.REQUESTED: "the policy decision",
    Status.AWAITING_INSPECTION: "the warehouse scan",
    Status.AWAITING_BUYER_DETAILS: "the buyer's bank account",
}


def _asked_by(step: _Step) -> str:
    return f"{step.record['requested_by']} ({step.record['reason']})"


def _operator_retry(step: _Step) -> SagaState | None:
    """Re-issue the current step's command: a new command id (the next try) with the step's
    idempotency key, so a partner that did it already answers with what it did."""
    state = step.state
    if state.status in NOTHING_TO_RESEND:
        step.notes.append(
            f"retry asked by {_asked_by(step)}: nothing to re-send in {state.status}, "
            f"waiting for {NOTHING_TO_RESEND[state.status]}"
        )
        return None
    step.notes.append(f"retry asked by {_asked_by(step)}: current step re-issued")
    state = _count_try(replace(state, timer={}), str(state.status))
    return _redo(step, state)


def _operator_cancel(step: _Step) -> SagaState | None:
    state = step.state
    reason = f"cancelled by {_asked_by(step)}"
    if state.status == Status.NEW:
        step.notes.append(f"cancel asked by {_asked_by(step)}: the return is not known yet")
        return None
    if state.status == Status.REQUESTED:
        return _finish(step, state, Status.CANCELLED, "REQUEST", reason)
    if state.status in (Status.PICKUP_PENDING, Status.PICKUP_SCHEDULED):
        return _cancel_pickup(step, state, reason)
    if state.status in (Status.CANCELLING, Status.COMPENSATING):
        step.notes.append(f"cancel asked by {_asked_by(step)}: already being undone")
        return None
    # collected or later: undo what was done, last first, and end CANCELLED
    return _compensate(step, replace(state, timer={}), STEP_OF[state.status], reason, True)


def _operator_decision(step: _Step) -> SagaState | None:
    """A needs-attention return decided by a person: refund, store credit or reject."""
    state = step.state
    decision = step.record["decision"]
    who = _asked_by(step)
    if decision not in ("REFUND", "STORE_CREDIT", "REJECT"):
        step.notes.append(f"decision {decision} by {who} is not one this coordinator knows")
        return None
    state = _rule(
        state,
        "operator_decision",
        {"decision": decision, "by": step.record["requested_by"], "reason": step.record["reason"]},
        f"{decision} decided by {who}",
    )
    if decision == "REJECT":
        return _finish(step, state, Status.REJECTED, "REFUND", f"rejected after review by {who}")
    if state.refund.get("status") == "SUCCEEDED":
        step.notes.append(f"{decision} decided by {who}: the refund was paid already")
        step.command(
            "ReturnCompleted", {"refunded": state.refund["amount"], "completed_at": step.now_ms}
        )
        return replace(state, status=Status.COMPLETED, outcome={"outcome": "COMPLETED"}, timer={})
    if not state.inspection.get("items"):
        step.notes.append(f"{decision} decided by {who}: not inspected, nothing to refund from")
        return None
    plan = dict(state.refund) if state.refund.get("amount") else _planned_refund(state)
    plan = {k: v for k, v in plan.items() if k not in ATTEMPT_ONLY}
    attempt = state.refund.get("attempt", 1)
    if decision == "STORE_CREDIT" and plan.get("method") != "STORE_CREDIT":
        plan["method"] = "STORE_CREDIT"
        attempt += 1 if state.refund else 0  # another method: another money attempt and key
    elif state.refund.get("status") == "DECLINED":
        attempt += 1  # declined for good: a new key; otherwise the same key finds any payment
    step.notes.append(f"{decision} decided by {who}: refund attempt {attempt} by {plan['method']}")
    state = replace(
        state,
        outcome={},
        timer={},
        tries={**state.tries, str(Status.REFUND_PENDING): 0},
    )
    return _start_refund(step, state, plan, attempt)


_HANDLERS: dict[tuple[Status, str], Any] = {
    (Status.NEW, "ReturnRequested"): _requested,
    (Status.REQUESTED, "ReturnAccepted"): _accepted,
    (Status.REQUESTED, "ReturnRejected"): _rejected,
    (Status.REQUESTED, "ReturnCancelled"): _cancelled_before_booking,
    (Status.PICKUP_PENDING, "PickupScheduled"): _pickup_scheduled,
    (Status.PICKUP_PENDING, "PickupAttemptFailed"): _pickup_attempt_failed,
    (Status.PICKUP_SCHEDULED, "PickupAttemptFailed"): _pickup_attempt_failed,
    (Status.PICKUP_PENDING, "PickupCompleted"): _pickup_completed,
    (Status.PICKUP_SCHEDULED, "PickupCompleted"): _pickup_completed,
    (Status.PICKUP_PENDING, "ReturnCancelled"): _buyer_cancelled,
    (Status.PICKUP_SCHEDULED, "ReturnCancelled"): _buyer_cancelled,
    (Status.CANCELLING, "PickupCancelled"): _cancel_confirmed,
    (Status.CANCELLING, "PickupCompleted"): _collected_while_cancelling,
    (Status.CANCELLING, "PickupScheduled"): _pickup_scheduled,
    (Status.AWAITING_INSPECTION, "InspectionRecorded"): _inspection_recorded,
    (Status.AWAITING_INSPECTION, "PickupCompleted"): _collection_reported_late,
    (Status.AWAITING_INSPECTION, "ReturnCancelled"): _too_late_to_cancel,
    (Status.INTAKE_PENDING, "ReturnCancelled"): _too_late_to_cancel,
    (Status.REFUND_PENDING, "ReturnCancelled"): _too_late_to_cancel,
    (Status.AWAITING_BUYER_DETAILS, "ReturnCancelled"): _too_late_to_cancel,
    (Status.EXCHANGE_PENDING, "ReturnCancelled"): _too_late_to_cancel,
    (Status.INTAKE_PENDING, "IntakeCompleted"): _intake_completed,
    (Status.RESERVING_REFUND, "RefundReserved"): _refund_reserved,
    (Status.RESERVING_REFUND, "RefundReservationRefused"): _reservation_refused,
    (Status.RESERVING_REFUND, "ReturnCancelled"): _too_late_to_cancel,
    (Status.RESERVING_REFUND, "PickupScheduled"): _pickup_scheduled,
    (Status.REFUND_PENDING, "RefundIssued"): _refund_issued,
    (Status.REFUND_PENDING, "RefundFailed"): _refund_failed,
    (Status.REFUND_PENDING, "RefundSettled"): _refund_settled,
    (Status.COMPENSATING, "RefundSettled"): _refund_paid_while_compensating,
    (Status.AWAITING_BUYER_DETAILS, "BuyerDetailsProvided"): _buyer_details_provided,
    (Status.EXCHANGE_PENDING, "ReplacementOrderPlaced"): _replacement_placed,
    (Status.EXCHANGE_PENDING, "ReplacementOutOfStock"): _replacement_out_of_stock,
    (Status.COMPENSATING, "RefundVoided"): _compensation_confirmed("void-refund"),
    (Status.COMPENSATING, "IntakeReversed"): _compensation_confirmed("reverse-intake"),
    (Status.COMPENSATING, "RefundReservationReleased"): _compensation_confirmed(
        "release-reservation"
    ),
    (Status.COMPENSATING, "PickupCancelled"): _compensation_confirmed("cancel-pickup"),
    (Status.COMPENSATING, "RefundIssued"): _refund_paid_while_compensating,
    # the carrier's callback can overtake the booking confirmation: keep its details
    (Status.AWAITING_INSPECTION, "PickupScheduled"): _pickup_scheduled,
    (Status.INTAKE_PENDING, "PickupScheduled"): _pickup_scheduled,
    (Status.REFUND_PENDING, "PickupScheduled"): _pickup_scheduled,
}
for _status in STATUS_RANK.keys() | {Status.CANCELLING, Status.COMPENSATING}:
    _HANDLERS[(_status, "SagaStepTimedOut")] = _timed_out
    _HANDLERS[(_status, "SagaRetryRequested")] = _operator_retry
    _HANDLERS[(_status, "SagaCancelRequested")] = _operator_cancel
_HANDLERS[(Status.NEEDS_ATTENTION, "SagaResumeRequested")] = _operator_decision
# the buyer may give the bank account any time before the refund needs it
for _status in (
    Status.REQUESTED,
    Status.PICKUP_PENDING,
    Status.PICKUP_SCHEDULED,
    Status.CANCELLING,
    Status.AWAITING_INSPECTION,
    Status.INTAKE_PENDING,
    Status.RESERVING_REFUND,
    Status.EXCHANGE_PENDING,
):
    _HANDLERS[(_status, "BuyerDetailsProvided")] = _buyer_details_provided

# Everything the coordinator consumes.
CONSUMED_EVENTS = frozenset(
    {
        "ReturnRequested",
        "ReturnAccepted",
        "ReturnRejected",
        "ReturnCancelled",
        "BuyerDetailsProvided",
        "PickupScheduled",
        "PickupAttemptFailed",
        "PickupCompleted",
        "PickupCancelled",
        "InspectionRecorded",
        "IntakeCompleted",
        "IntakeReversed",
        "RefundReserved",
        "RefundReservationRefused",
        "RefundReservationReleased",
        "RefundIssued",
        "RefundSettled",
        "RefundFailed",
        "RefundVoided",
        "ReplacementOrderPlaced",
        "ReplacementOutOfStock",
        "SagaStepTimedOut",
        "SagaRetryRequested",
        "SagaCancelRequested",
        "SagaResumeRequested",
    }
)


def due_timer(state: SagaState, now_ms: int) -> dict[str, Any] | None:
    """The timer that should fire now, if any (read by the coordinator's timer loop)."""
    if state.terminal or not state.timer or state.timer["due_at"] > now_ms:
        return None
    return state.timer


def _masked_request(request: dict[str, Any]) -> dict[str, Any]:
    """The buyer's bank account number shows its last four characters only."""
    account = request.get("refund_account")
    if not account:
        return request
    number = str(account.get("number", ""))
    return {**request, "refund_account": {**account, "number": f"****{number[-4:]}"}}


def status_view(state: SagaState) -> dict[str, Any]:
    """What `GET /returns/{return_id}` shows."""
    return {
        "return_id": state.return_id,
        "status": str(state.status),
        "step": STEP_OF[state.status],
        "terminal": state.terminal,
        "outcome": state.outcome or None,
        "policy_version": state.policy_version or None,
        "rules_fired": list(state.rules_fired),
        "liability": (state.refund or {}).get("liability")
        or (state.inspection.get("refund_plan") or {}).get("liability"),
        "request": _masked_request(state.request) or None,
        "pickup": state.pickup or None,
        "inspection": state.inspection or None,
        "intake": state.intake or None,
        "refund": state.refund or None,
        "timer": state.timer or None,
        "compensations_registered": list(state.compensations),
        "compensation": state.compensation or None,
        "history": list(state.history),
        "created_at": state.created_at,
        "updated_at": state.updated_at,
    }


_STATE_FIELDS = tuple(state_field.name for state_field in fields(SagaState))
