"""The refund service's answers: issued, pending until settled (with the overdue ticket), failed
(retry, fallback, a person or compensation)."""

from __future__ import annotations

from services.decisions.saga.commands import complete, request_refund
from services.decisions.saga.compensation import start_compensation
from services.decisions.saga.refund_routes import attempt_fields
from services.decisions.saga.state import SagaState, Status, changed
from services.decisions.saga.step import (
    Step,
    backoff_ms,
    copied,
    exhausted,
    finish,
    open_ticket,
    retry_later,
    rule_fired,
    set_deadline,
    set_timer,
    ticket_facts,
)


def wait_for_settlement(step: Step, state: SagaState) -> SagaState:
    """A pending refund waits for its webhook: past the policy's deadline a person is asked
    to chase it (the refund is not undone: the money may be on its way); past the
    coordinator's settlement deadline it is compensated."""
    cap_at = state.refund["pending_since"] + step.config.settlement_deadline_ms
    due_by = state.refund.get("due_by")
    if due_by and not state.refund.get("overdue_ticket") and due_by < cap_at:
        if due_by <= step.now_ms:
            return _refund_overdue(step, state)
        return set_deadline(step, state, due_by - step.now_ms)
    return set_deadline(step, state, max(0, cap_at - step.now_ms))


def _refund_overdue(step: Step, state: SagaState) -> SagaState:
    refund = state.refund
    days = refund.get("deadline_days")
    why = (
        f"refund by {refund['method']} still pending {days} day(s) after it was decided "
        f"(policy deadline): ask {refund.get('provider') or 'the provider'} where it is"
    )
    ticket_id = open_ticket(
        step,
        "refund-overdue",
        why,
        ticket_facts(state, method=refund["method"], due_by=refund["due_by"]),
        str(refund.get("attempt", 1)),
    )
    step.notes.append(why)
    state = rule_fired(
        state,
        "refund_deadline_days",
        {"method": refund["method"], "deadline_days": days, "due_by": refund["due_by"]},
        f"overdue: ticket {ticket_id} opened, still waiting for the settlement",
    )
    state = changed(state, refund={**refund, "overdue_ticket": ticket_id})
    return wait_for_settlement(step, state)


def fall_back(step: Step, state: SagaState, why: str, decline_code: str) -> SagaState:
    """Pay by the policy's fallback method (store credit) instead, recorded as a fallback;
    with no fallback left the refund has failed for good and the return is compensated."""
    fallback = str((state.policy.get("rules") or {}).get("decline_fallback") or "NONE")
    method = state.refund.get("method")
    if fallback == "NEEDS_ATTENTION":
        return finish(
            step,
            state,
            Status.NEEDS_ATTENTION,
            "REFUND",
            f"{why}: the policy leaves the refund to a person",
            ("refund-declined", ticket_facts(state, decline_code=decline_code)),
        )
    if fallback != "STORE_CREDIT" or method == "STORE_CREDIT":
        return start_compensation(step, state, "REFUND", f"{why}; no fallback left ({fallback})")
    state = rule_fired(
        state,
        "decline_fallback",
        {"method": method, "decline_code": decline_code, "fallback": fallback},
        f"{why}: refunded as store credit instead (policy)",
    )
    attempt = state.refund.get("attempt", 1) + 1
    refund = {
        **attempt_fields(step, state, state.refund, "STORE_CREDIT"),
        "attempt": attempt,
        "status": "REQUESTED",
        "fallback": {"from": method, "decline_code": decline_code, "reason": why},
    }
    step.notes.append(f"{why}: falling back to STORE_CREDIT (refund attempt {attempt})")
    state = changed(
        state,
        status=Status.REFUND_PENDING,
        refund=refund,
        tries={**state.tries, str(Status.REFUND_PENDING): 0},
    )
    if "void-refund" not in state.compensations:
        state = changed(state, compensations=(*state.compensations, "void-refund"))
    return request_refund(step, state)


def _earlier_attempt(step: Step) -> bool:
    """A result for an earlier refund attempt (e.g. a decline re-sent after the saga fell
    back to store credit) says nothing about the current one."""
    key = step.record.get("idempotency_key") or ""
    current = f"{step.state.return_id}-refund-{step.state.refund.get('attempt', 1)}"
    if key and key != current:
        step.notes.append(f"answer for an earlier refund attempt ({key}) ignored")
        return True
    return False


def refund_issued(step: Step) -> SagaState | None:
    if _earlier_attempt(step):
        return None
    r = step.record
    refund = {
        **step.state.refund,
        **copied(r, "status", "provider", "provider_refund_id", "amount"),
        "issued_at": step.envelope["occurred_at"],
    }
    if r.get("schedule"):
        currency = r["amount"]["currency"]
        refund["bnpl_schedule"] = [{**i, "currency": currency} for i in r["schedule"]]
        refund["refunded_to_buyer_minor"] = r.get("refunded_to_buyer_minor")
    if r.get("settles_at"):
        refund["settles_at"] = r["settles_at"]
    state = changed(step.state, refund=refund)
    if r["status"] == "PENDING":
        if state.refund.get("settled_at"):  # its webhook came first
            return _complete_refund(step, changed(state, refund={**refund, "status": "SUCCEEDED"}))
        step.notes.append("refund pending at the provider; waiting for settlement")
        since = refund.get("pending_since") or step.now_ms  # a re-sent answer keeps it
        state = changed(state, refund={**refund, "pending_since": since})
        return wait_for_settlement(step, state)
    return _complete_refund(step, state)


def _complete_refund(step: Step, state: SagaState) -> SagaState:
    complete(step, state, state.refund["amount"])
    return changed(state, status=Status.COMPLETED, outcome={"outcome": "COMPLETED"}, timer={})


def refund_settled(step: Step) -> SagaState | None:
    r = step.record
    known = step.state.refund.get("provider_refund_id")
    if known and known != r["provider_refund_id"]:
        step.notes.append(f"settlement of another refund ({r['provider_refund_id']}) ignored")
        return None
    refund = {
        **step.state.refund,
        **copied(r, "provider", "provider_refund_id", "settled_at"),
    }
    if step.state.refund.get("status") != "PENDING":
        # the webhook overtook the service's own answer: keep it, RefundIssued completes
        step.notes.append("settlement arrived before the refund's answer; kept")
        return changed(step.state, refund=refund)
    step.notes.append("the provider settled the pending refund")
    return _complete_refund(step, changed(step.state, refund={**refund, "status": "SUCCEEDED"}))


def refund_failed(step: Step) -> SagaState | None:
    if _earlier_attempt(step):
        return None
    r = step.record
    state = changed(step.state, refund={**step.state.refund, "last_error": r["decline_code"]})
    action = r.get("next_action") or ""
    if r["retryable"]:
        if exhausted(step, state):
            return start_compensation(
                step,
                state,
                "REFUND",
                f"refund failed {step.config.max_tries} times: {r['decline_code']}",
            )
        return retry_later(step, state, f"refund failed transiently: {r['decline_code']}")
    why = f"refund declined: {r['decline_code']}"
    declines = [*state.refund.get("declines", []), r["decline_code"]]
    state = changed(
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
            return fall_back(step, state, f"{why} {len(declines)} times", r["decline_code"])
        attempt = state.refund.get("attempt", 1) + 1
        state = changed(
            state,
            refund={**state.refund, "attempt": attempt, "status": "REQUESTED"},
            tries={**state.tries, str(Status.REFUND_PENDING): 0},
        )
        stage = str(Status.REFUND_PENDING)
        delay = backoff_ms(step.config, state.return_id, f"{stage}-declined", len(declines))
        step.notes.append(f"{why}; asked again as refund attempt {attempt} in {delay} ms")
        return set_timer(step, state, "retry", delay)
    if action == "FALLBACK":
        return fall_back(step, state, why, r["decline_code"])
    if action == "NEEDS_ATTENTION":
        return finish(
            step,
            state,
            Status.NEEDS_ATTENTION,
            "REFUND",
            f"{why}: a person must decide",
            ("refund-declined", ticket_facts(state, decline_code=r["decline_code"])),
        )
    return start_compensation(step, state, "REFUND", why)  # events from before next_action existed
