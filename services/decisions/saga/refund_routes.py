"""Refund routes after intake: the order refund ledger's reservation, refund or exchange, the
attempt's fields and deadline, waiting for the buyer's bank account, replacement orders."""

from __future__ import annotations

from typing import Any

from services.decisions.refunds.refund_plan import plan_refund, refund_lines
from services.decisions.saga.commands import complete, request_refund, request_replacement
from services.decisions.saga.exchange_difference import (
    charge_key,
    difference_plan,
    exchange_difference,
    out_of_stock_after_charge,
    request_charge,
)
from services.decisions.saga.state import DAY_MS, SagaState, Status, changed
from services.decisions.saga.step import (
    Step,
    exhausted,
    finish,
    retry_later,
    rule_fired,
    set_deadline,
    ticket_facts,
)


def reserves_with_the_order(state: SagaState) -> bool:
    """Plans decided by a policy go through the order refund ledger, with the order's
    snapshot or, without one, its returned lines (plans from before policies travelled with
    returns refund as planned)."""
    plan = state.inspection.get("refund_plan") or {}
    return bool(plan.get("fee_terms") and plan.get("returning"))


def refund_or_exchange(step: Step, state: SagaState) -> SagaState:
    if state.request.get("resolution") == "EXCHANGE" and state.request.get("exchange_sku"):
        liability = planned_refund(state).get("liability") or {}
        difference = exchange_difference(state)
        if liability.get("refund") != "REDUCED" and difference > 0:
            if state.request.get("pay_difference"):
                step.notes.append(
                    f"exchange to a dearer variant: the buyer is charged {difference} first"
                )
                return request_charge(step, state)
            state = rule_fired(
                state,
                "exchange_refused",
                {"exchange_sku": state.request["exchange_sku"], "costs_more_minor": difference},
                "the variant costs more and the buyer did not agree to pay: refunded instead",
            )
        elif liability.get("refund") != "REDUCED":
            step.notes.append(f"exchange: replacement {state.request['exchange_sku']} requested")
            return request_replacement(step, changed(state, status=Status.EXCHANGE_PENDING))
        # a full replacement for an item the buyer damaged would undo the policy's deduction
        state = rule_fired(
            state,
            "exchange_refused",
            {"exchange_sku": state.request["exchange_sku"], "liable": liability.get("liable")},
            "item damaged by the buyer: no replacement, the reduced refund is paid instead",
        )
    return start_refund(step, state, planned_refund(state))


def refund_reserved(step: Step) -> SagaState:
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
    state = changed(
        state,
        inspection={**state.inspection, "refund_plan": plan},
        timer={},
        tries={**state.tries, str(Status.RESERVING_REFUND): 0},
    )
    if r["other_returns"]:
        state = rule_fired(
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
    return refund_or_exchange(step, state)


def reservation_refused(step: Step) -> SagaState:
    r = step.record
    reason = f"the order refund ledger refused the refund: {r['reason']}"
    return finish(
        step,
        changed(step.state, timer={}),
        Status.NEEDS_ATTENTION,
        "REFUND",
        reason,
        ("refund-units-already-returned", ticket_facts(step.state, held_by=",".join(r["held_by"]))),
    )


def planned_refund(state: SagaState) -> dict[str, Any]:
    # A saga inspected before plans were made at inspection gets the old arithmetic
    # (plan_refund without a policy).
    return (
        state.inspection.get("refund_plan")
        or plan_refund(state.request, {}, state.inspection.get("items", []), False).refund
    )


def start_refund(step: Step, state: SagaState, plan: dict[str, Any], attempt: int = 1) -> SagaState:
    if plan["amount"]["amount_minor"] == 0:  # free items, or fees ate it all
        step.notes.append("refund total is zero: nothing to pay")
        complete(step, state, plan["amount"], plan)
        return changed(
            state,
            status=Status.COMPLETED,
            refund={**plan, "status": "NOTHING_TO_PAY"},
            outcome={"outcome": "COMPLETED"},
            timer={},
        )
    refund = attempt_fields(step, state, plan, plan["method"])
    state = changed(state, refund={**refund, "status": "REQUESTED", "attempt": attempt})
    if plan["method"] == "BANK_TRANSFER" and not state.request.get("refund_account"):
        return _await_buyer_details(step, state)
    state = changed(
        state,
        status=Status.REFUND_PENDING,
        compensations=(*state.compensations, "void-refund"),
    )
    return request_refund(step, state)


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


def attempt_fields(
    step: Step, state: SagaState, base: dict[str, Any], method: str
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


def _due_by(step: Step, days: int | None) -> int | None:
    """The policy's refund deadline for the method, counted from now."""
    return None if days is None else step.now_ms + days * DAY_MS


def _await_buyer_details(step: Step, state: SagaState) -> SagaState:
    deadline_at = step.now_ms + step.config.buyer_details_deadline_ms
    step.notes.append("a bank transfer needs the buyer's account: asked the buyer")
    step.command("BuyerDetailsRequested", {"needed": "refund_account", "deadline_at": deadline_at})
    return set_deadline(
        step,
        changed(state, status=Status.AWAITING_BUYER_DETAILS),
        step.config.buyer_details_deadline_ms,
    )


def buyer_details_provided(step: Step) -> SagaState:
    account = step.record["refund_account"]
    state = changed(step.state, request={**step.state.request, "refund_account": account})
    if state.status != Status.AWAITING_BUYER_DETAILS:
        step.notes.append("the buyer's bank account is kept for the refund")
        return state
    step.notes.append("the buyer gave a bank account: refund requested")
    due_by = _due_by(step, state.refund.get("deadline_days"))  # the buyer's wait not counted
    state = changed(
        state,
        status=Status.REFUND_PENDING,
        timer={},
        compensations=(*state.compensations, "void-refund"),
        refund=state.refund | ({"due_by": due_by} if due_by else {}),
    )
    return request_refund(step, state)


def replacement_placed(step: Step) -> SagaState:
    r = step.record
    outcome = {
        "outcome": "COMPLETED",
        "resolution": "EXCHANGE",
        "replacement_order_id": r["replacement_order_id"],
    }
    difference = exchange_difference(step.state)
    if difference < 0:  # a cheaper variant: the difference goes back to the buyer
        plan = difference_plan(step.state, planned_refund(step.state))
        step.notes.append(
            f"replacement order {r['replacement_order_id']} placed: the cheaper variant's "
            f"difference ({-difference}) is refunded"
        )
        state = changed(step.state, outcome=outcome, timer={})
        return start_refund(step, state, plan)
    step.notes.append(f"replacement order {r['replacement_order_id']} placed: nothing to refund")
    complete(step, step.state, None)
    return changed(step.state, status=Status.COMPLETED, outcome=outcome, timer={})


def charge_failed(step: Step) -> SagaState | None:
    """The dearer variant's difference could not be charged: retried while transient, else
    the exchange is off and the return is refunded as planned."""
    r = step.record
    state = step.state
    if r["idempotency_key"] != charge_key(state.return_id):
        step.notes.append(f"answer for another charge ({r['idempotency_key']}) ignored")
        return None
    if r["retryable"] and not exhausted(step, state):
        return retry_later(step, state, f"the charge failed transiently: {r['decline_code']}")
    state = rule_fired(
        changed(state, timer={}),
        "exchange_charge_declined",
        {"decline_code": r["decline_code"], "exchange_sku": state.request.get("exchange_sku")},
        "the buyer could not pay the dearer variant's difference: refunded as planned instead",
    )
    step.notes.append(f"charge failed ({r['decline_code']}): no exchange, refund as planned")
    return start_refund(step, state, planned_refund(state))


def replacement_out_of_stock(step: Step) -> SagaState:
    r = step.record
    if step.state.request.get("exchange_charge"):
        return out_of_stock_after_charge(step, changed(step.state, timer={}))
    choice = str((step.state.policy.get("rules") or {}).get("exchange_out_of_stock") or "REFUND")
    plan = planned_refund(step.state)
    if choice == "STORE_CREDIT":
        plan = {**plan, "method": "STORE_CREDIT"}
    state = rule_fired(
        changed(step.state, timer={}),
        "exchange_out_of_stock",
        {"sku": r["sku"], "available": r["available"], "choice": choice},
        f"replacement {r['sku']} out of stock: refunded to {plan['method']} (policy)",
    )
    step.notes.append(f"replacement {r['sku']} out of stock: refund to {plan['method']}")
    return start_refund(step, state, plan)
