"""One handled event's working context (`Step`) and the helpers every step uses: history, timers and
backoff, tries, tickets, finishing and the rules fired."""

from __future__ import annotations

import hashlib
from typing import Any

from services.decisions.event_ids import deterministic_event_id, envelope_of
from services.decisions.saga.state import (
    HISTORY_KEPT,
    PRODUCER,
    STEP_OF,
    Command,
    SagaConfig,
    SagaState,
    Status,
    changed,
)


class Step:
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
        envelope = envelope_of(
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


def with_history(
    step: Step, new_state: SagaState, ignored: bool = False, parked_event: bool = False
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
        new_state = changed(new_state, timer={})
    return changed(new_state, history=(*old.history, entry)[-HISTORY_KEPT:])


def set_timer(step: Step, state: SagaState, kind: str, delay_ms: int) -> SagaState:
    number = state.timers_set + 1
    stage = str(state.status)
    timer = {
        "id": f"{kind}-{stage}-{number}",
        "kind": kind,
        "step": STEP_OF[state.status],
        "stage": stage,
        "due_at": step.now_ms + delay_ms,
    }
    return changed(state, timer=timer, timers_set=number)


def set_deadline(step: Step, state: SagaState, delay_ms: int) -> SagaState:
    return set_timer(step, state, "deadline", delay_ms)


def backoff_ms(config: SagaConfig, return_id: str, stage: str, tries: int) -> int:
    """Exponential backoff with deterministic jitter (50–150 %): pure and repeatable."""
    base = min(config.backoff_cap_ms, config.backoff_base_ms * 2 ** max(0, tries - 1))
    digest = hashlib.sha256(f"{return_id}/{stage}/{tries}".encode()).digest()
    jitter_permille = 500 + int.from_bytes(digest[:2], "big") % 1001
    return base * jitter_permille // 1000


def tries_of(state: SagaState, stage: str) -> int:
    return state.tries.get(stage, 0)


def count_try(state: SagaState, stage: str) -> SagaState:
    return changed(state, tries={**state.tries, stage: tries_of(state, stage) + 1})


def retry_later(step: Step, state: SagaState, why: str) -> SagaState:
    """A transient failure: count it and set a retry timer (the caller checks the bound)."""
    stage = str(state.status)
    state = count_try(state, stage)
    delay = backoff_ms(step.config, state.return_id, stage, tries_of(state, stage))
    step.notes.append(
        f"{why}; retry {tries_of(state, stage)} of {step.config.max_tries - 1} in {delay} ms"
    )
    return set_timer(step, state, "retry", delay)


def exhausted(step: Step, state: SagaState) -> bool:
    return tries_of(state, str(state.status)) + 1 >= step.config.max_tries


def open_ticket(
    step: Step, category: str, summary: str, facts: dict[str, str], *instance: str
) -> str:
    """One ticket per return and category (and `instance`, where one may come again)."""
    ticket_id = deterministic_event_id(step.state.return_id, "ticket", category, *instance)
    step.command(
        "TicketOpened",
        {"ticket_id": ticket_id, "category": category, "summary": summary, "facts": facts},
        category,
        *instance,
    )
    return ticket_id


def finish(
    step: Step,
    state: SagaState,
    status: Status,
    failed_step: str,
    reason: str,
    ticket: tuple[str, dict[str, str]] | None = None,
) -> SagaState:
    """End the saga in a failure state with a reason (and a ticket when a person must act)."""
    outcome: dict[str, Any] = {"outcome": str(status), "reason": reason, "failed_step": failed_step}
    if ticket is not None:
        outcome["ticket_id"] = open_ticket(step, ticket[0], reason, ticket[1])
    step.command(
        "ReturnFailed", {"outcome": str(status), "failed_step": failed_step, "reason": reason}
    )
    step.notes.append(reason)
    return changed(state, status=status, outcome=outcome, timer={}, parked=())


def ticket_facts(state: SagaState, **extra: Any) -> dict[str, str]:
    facts = {
        "return_id": state.return_id,
        "status": str(state.status),
        "order_ref": str(state.request.get("order_ref", "")),
        "market": str(state.request.get("market", "")),
        "booking_id": str(state.pickup.get("booking_id", "")),
        "refund_status": str(state.refund.get("status", "")),
    }
    facts.update({k: str(v) for k, v in extra.items()})
    return facts


def rule_fired(state: SagaState, rule_id: str, facts: dict[str, Any], effect: str) -> SagaState:
    fired = {"rule_id": rule_id, "facts": facts, "effect": effect, "step": "REFUND"}
    return changed(state, rules_fired=(*state.rules_fired, fired))


def return_currency(state: SagaState) -> str:
    """The return's currency: its lines' (one currency per return, the order's)."""
    return str(state.request["lines"][0]["unit_price"]["currency"])


def copied(record: dict[str, Any], *names: str) -> dict[str, Any]:
    """The named fields of an event, as the saga keeps them."""
    return {name: record[name] for name in names}
