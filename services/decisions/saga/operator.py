"""A person steers the saga: retry, cancel, or decide a return that needs attention."""

from __future__ import annotations

from services.decisions.saga.commands import cancel_pickup, complete
from services.decisions.saga.compensation import start_compensation
from services.decisions.saga.refund_routes import ATTEMPT_ONLY, planned_refund, start_refund
from services.decisions.saga.state import STEP_OF, SagaState, Status, changed
from services.decisions.saga.step import Step, count_try, finish, rule_fired
from services.decisions.saga.timeouts import redo

NOTHING_TO_RESEND = {
    Status.NEW: "the return request",
    Status.REQUESTED: "the policy decision",
    Status.AWAITING_INSPECTION: "the warehouse scan",
    Status.AWAITING_BUYER_DETAILS: "the buyer's bank account",
    Status.DISPUTED: "the re-inspection or an agent's ruling",
}


def _asked_by(step: Step) -> str:
    return f"{step.record['requested_by']} ({step.record['reason']})"


def on_operator_retry(step: Step) -> SagaState | None:
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
    state = count_try(changed(state, timer={}), str(state.status))
    return redo(step, state)


def on_operator_cancel(step: Step) -> SagaState | None:
    state = step.state
    reason = f"cancelled by {_asked_by(step)}"
    if state.status == Status.NEW:
        step.notes.append(f"cancel asked by {_asked_by(step)}: the return is not known yet")
        return None
    if state.status == Status.REQUESTED:
        return finish(step, state, Status.CANCELLED, "REQUEST", reason)
    if state.status in (Status.PICKUP_PENDING, Status.PICKUP_SCHEDULED):
        return cancel_pickup(step, state, reason)
    if state.status in (Status.CANCELLING, Status.COMPENSATING):
        step.notes.append(f"cancel asked by {_asked_by(step)}: already being undone")
        return None
    if state.status == Status.EXCHANGE_CHARGING:  # nothing undoes a charge here yet
        step.notes.append(
            f"cancel asked by {_asked_by(step)}: the buyer is being charged for the exchange; "
            "wait for the answer"
        )
        return None
    # collected or later: undo what was done, last first, and end CANCELLED
    return start_compensation(step, changed(state, timer={}), STEP_OF[state.status], reason, True)


def on_operator_decision(step: Step) -> SagaState | None:
    """A needs-attention return decided by a person: refund, store credit or reject."""
    state = step.state
    decision = step.record["decision"]
    who = _asked_by(step)
    if decision not in ("REFUND", "STORE_CREDIT", "REJECT"):
        step.notes.append(f"decision {decision} by {who} is not one this coordinator knows")
        return None
    state = rule_fired(
        state,
        "operator_decision",
        {"decision": decision, "by": step.record["requested_by"], "reason": step.record["reason"]},
        f"{decision} decided by {who}",
    )
    if decision == "REJECT":
        return finish(step, state, Status.REJECTED, "REFUND", f"rejected after review by {who}")
    if state.refund.get("status") == "SUCCEEDED":
        step.notes.append(f"{decision} decided by {who}: the refund was paid already")
        complete(step, state, state.refund["amount"])
        return changed(state, status=Status.COMPLETED, outcome={"outcome": "COMPLETED"}, timer={})
    if not state.inspection.get("items"):
        step.notes.append(f"{decision} decided by {who}: not inspected, nothing to refund from")
        return None
    plan = dict(state.refund) if state.refund.get("amount") else planned_refund(state)
    plan = {k: v for k, v in plan.items() if k not in ATTEMPT_ONLY}
    attempt = state.refund.get("attempt", 1)
    if decision == "STORE_CREDIT" and plan.get("method") != "STORE_CREDIT":
        plan["method"] = "STORE_CREDIT"
        attempt += 1 if state.refund else 0  # another method: another money attempt and key
    elif state.refund.get("status") == "DECLINED":
        attempt += 1  # declined for good: a new key; otherwise the same key finds any payment
    step.notes.append(f"{decision} decided by {who}: refund attempt {attempt} by {plan['method']}")
    state = changed(
        state,
        outcome={},
        timer={},
        tries={**state.tries, str(Status.REFUND_PENDING): 0},
    )
    return start_refund(step, state, plan, attempt)
