"""The risk step, after intake and before any money moves: the decision asked for, its
answer acted on once, a held return's reviewer verdict, and deadlines that end with a person.

- approve: the refund goes on;
- review: the refund goes on, and the risk service has queued a case for a reviewer;
- hold: HELD_FOR_REVIEW, no money moves until a reviewer's verdict (approve: the refund goes
  on; deny: rejected with the reviewer's reason and a ticket); past its deadline a person is
  told (a ticket), and it stays held: never approved or denied by itself;
- decline: rejected with the buyer-facing reason, and a ticket.

An unanswered check is asked again at each deadline; once the tries are spent a person is
told, and it is still asked: no money moves without a decision.
"""

from __future__ import annotations

from typing import Any

import orjson

from services.decisions.risk.risk_check import REQUEST_FIELDS
from services.decisions.saga.commands import request_reservation, send_command
from services.decisions.saga.refund_routes import refund_or_exchange, reserves_with_the_order
from services.decisions.saga.state import SagaState, Status, changed
from services.decisions.saga.step import (
    Step,
    count_try,
    finish,
    open_ticket,
    set_timer,
    ticket_facts,
    tries_of,
)

MOVES_MONEY = frozenset({"approve", "review"})


def decision_id(return_id: str) -> str:
    """One risk decision per return: a replayed check finds it already made."""
    return f"{return_id}-risk"


def request_risk_check(step: Step, state: SagaState) -> SagaState:
    request, inspection = state.request, state.inspection
    body = {
        "decision_id": decision_id(state.return_id),
        **{name: str(request.get(name, "")) for name in REQUEST_FIELDS if name != "delivered_at"},
        "delivered_at": int(request.get("delivered_at") or 0),
        "items": inspection.get("items", []),
        "inspected_at": int(inspection.get("inspected_at") or step.now_ms),
    }
    state = changed(state, status=Status.RISK_PENDING)
    return send_command(
        step, state, Status.RISK_PENDING, "RiskCheckRequested", body, step.config.risk_deadline_ms
    )


def towards_the_money(step: Step, state: SagaState) -> SagaState:
    """The refund (through the order refund ledger where the plan needs it) or exchange."""
    if reserves_with_the_order(state):
        state = changed(
            state,
            status=Status.RESERVING_REFUND,
            compensations=(*state.compensations, "release-reservation"),
        )
        return request_reservation(step, state)
    return refund_or_exchange(step, state)


def risk_decided(step: Step) -> SagaState:
    r = step.record
    outcome = r["outcome"]
    risk = {
        "decision_id": r["decision_id"],
        "outcome": outcome,
        "score": r["score"],
        "rule_set": r["rule_set"],
        "rule_set_version": r["rule_set_version"],
        "rules": [rule["rule_id"] for rule in r["rules"]],
        "case_id": r.get("case_id"),
        "decided_at": r["decided_at"],
    }
    fired = tuple(
        {
            "rule_id": f"risk:{rule['rule_id']}",
            "facts": orjson.loads(rule["inputs_json"]),
            "effect": f"score {rule['score']} towards {outcome}",
            "step": "RISK",
        }
        for rule in r["rules"]
    )
    state = changed(step.state, risk=risk, rules_fired=(*step.state.rules_fired, *fired))
    step.notes.append(f"risk decision: {outcome} (score {r['score']})")
    if outcome in MOVES_MONEY:
        return towards_the_money(step, state)
    if outcome == "hold":
        deadline = r.get("review_deadline_at")
        delay = step.config.review_deadline_ms
        if deadline:
            delay = max(0, int(deadline) - step.now_ms)
        state = changed(state, status=Status.HELD_FOR_REVIEW)
        return set_timer(step, state, "deadline", delay)
    reason = r["reason"] or "the return cannot be accepted"
    return finish(
        step,
        state,
        Status.REJECTED,
        "RISK",
        f"declined: {reason}",
        ("risk-declined", ticket_facts(state, rules=",".join(risk["rules"]), score=r["score"])),
    )


def review_decided(step: Step) -> SagaState:
    """A reviewer's verdict on a held return."""
    r = step.record
    state = changed(step.state, risk={**step.state.risk, "verdict": _verdict(r)})
    step.notes.append(f"review {r['verdict']} by {r['reviewer']}: {r['reason']}")
    if r["verdict"] == "approve":
        return towards_the_money(step, state)
    return finish(
        step,
        state,
        Status.REJECTED,
        "RISK",
        f"denied at review by {r['reviewer']}: {r['reason']}",
        ("review-denied", ticket_facts(state, case_id=r["case_id"], reviewer=r["reviewer"])),
    )


def review_noted(step: Step) -> SagaState:
    """A verdict on a return that did not wait for it (paid, reviewed afterwards): kept."""
    r = step.record
    step.notes.append(f"review {r['verdict']} by {r['reviewer']} noted (the return did not wait)")
    return changed(step.state, risk={**step.state.risk, "verdict": _verdict(r)})


def _verdict(record: dict[str, Any]) -> dict[str, Any]:
    return {
        name: record[name] for name in ("case_id", "verdict", "reviewer", "reason", "decided_at")
    }


def risk_check_overdue(step: Step, state: SagaState, give_up_at: int) -> SagaState:
    """No answer before the deadline: asked again; once the tries are spent a person is told
    (once), and it is still asked."""
    stage = str(Status.RISK_PENDING)
    if tries_of(state, stage) + 1 == give_up_at:
        open_ticket(
            step,
            "risk-check-unanswered",
            f"no risk decision after {give_up_at} tries: the refund waits",
            ticket_facts(state),
        )
    state = count_try(state, stage)
    return request_risk_check(step, state)


def review_overdue(step: Step, state: SagaState) -> SagaState:
    """A held return nobody reviewed in time: a person is told; it stays held."""
    open_ticket(
        step,
        "review-overdue",
        "a held return was not reviewed before its deadline",
        ticket_facts(state, case_id=state.risk.get("case_id", "")),
    )
    step.notes.append("review overdue: a person is told; the return stays held")
    return state
