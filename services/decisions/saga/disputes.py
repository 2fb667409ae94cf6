"""A buyer disputes a decided return (pure saga steps).

The buyer asks at the front door (DisputeRequested). A return rejected at inspection, or
completed with something kept from its refund (a restocking fee, a damage deduction, return
shipping), may be disputed once, within `dispute_window_ms` of when it ended; anything else
is refused with a note (the view's `dispute` says why). An accepted dispute opens
(DisputeOpened, DISPUTED): the items are to be inspected again at another station
(ReinspectionRequested names the first station, which the inspection service refuses), and a
support case is opened (TicketOpened, category `dispute`). The first decision wins:

- the re-inspection (InspectionRecorded while DISPUTED): the policy's refund worked out again
  from the new grades; what it refunds beyond what was paid is the difference (nothing when
  the new inspection rejects the return too, or refunds no more: the outcome is upheld);
- an agent's ruling through the case (DisputeRuled): FULL_REFUND (everything the first
  decision kept), PARTIAL_REFUND or GOODWILL (an amount, capped at what was kept), or
  UPHELD.

A difference is paid through the same money path as any refund (RefundRequested to the
refund service, idempotency key `{return_id}-dispute-1`: retries find the first payment),
and DisputeDecided records the decision with who pays for it, which settlement books. With
nothing to pay, DisputeDecided comes at once and the return goes back to how it ended.
Who pays: a re-inspection's difference is charged to the party the new inspection makes
liable (the seller for a buyer's remorse return: the seller refunds its item, as for the
return itself); an agent names the party (goodwill: the platform).
"""

from __future__ import annotations

import json
from typing import Any

from services.decisions.money import Money
from services.decisions.refunds.refund_amount import refund_for_lines
from services.decisions.refunds.refund_plan import plan_refund
from services.decisions.saga.commands import send_command
from services.decisions.saga.forward import PLAN_ERRORS, inspection_problem, plan_for_items
from services.decisions.saga.personal_data import ERASED
from services.decisions.saga.state import SagaState, Status, changed
from services.decisions.saga.step import (
    Step,
    exhausted,
    finish,
    open_ticket,
    retry_later,
    return_currency,
    set_deadline,
    ticket_facts,
)

DISPUTE_NUMBER = 1  # one dispute per return
DISPUTABLE = (Status.REJECTED, Status.COMPLETED)
DECISIONS = ("FULL_REFUND", "PARTIAL_REFUND", "GOODWILL", "UPHELD")
PAYERS = ("SELLER", "PLATFORM", "CARRIER")


def dispute_key(return_id: str) -> str:
    """The dispute's refund idempotency key at the provider (its merchant reference)."""
    return f"{return_id}-dispute-{DISPUTE_NUMBER}"


def paid_minor(state: SagaState) -> int:
    """What the return refunded the buyer before the dispute."""
    if state.status == Status.REJECTED or state.request.get("resolution") == "EXCHANGE":
        return 0
    return int(((state.refund or {}).get("amount") or {}).get("amount_minor") or 0)


def full_minor(state: SagaState) -> int:
    """Everything the return could refund: its refund plan's lines with every fee and
    deduction given back (a rejected return: the plan for its items found sound)."""
    plan = state.inspection.get("refund_plan") or _sound_plan(state)
    breakdown = plan.get("breakdown") or ()
    if breakdown:
        return sum(
            line["amount_minor"]
            + line.get("restocking_fee_minor", 0)
            + line.get("damage_deduction_minor", 0)
            + line.get("return_shipping_minor", 0)
            for line in breakdown
        )
    if plan.get("amount"):
        return int(plan["amount"]["amount_minor"])
    return refund_for_lines(state.request["lines"]).total.amount_minor


def _sound_plan(state: SagaState) -> dict[str, Any]:
    """The policy's refund had the inspected items matched the order, undamaged."""
    sound = [
        {
            **item,
            "grade": "A",
            "matches_order": True,
            "measured_weight_grams": item.get("expected_weight_grams"),
            "packaging_damaged": False,
        }
        for item in state.inspection.get("items") or ()
    ]
    try:
        return plan_refund(state.request, state.policy, sound, False).refund
    except PLAN_ERRORS:
        return {}


def _refusal(state: SagaState, now_ms: int, window_ms: int) -> str:
    """Why the return cannot be disputed now ("" when it can)."""
    if state.dispute and state.dispute.get("status") != "REFUSED":
        return f"already disputed ({state.dispute.get('status')})"
    if state.status not in DISPUTABLE:
        return f"only a decided return can be disputed (it is {state.status})"
    if not state.inspection.get("items"):
        return "no inspection to dispute"
    if state.request.get("resolution") == "EXCHANGE" and state.status == Status.COMPLETED:
        return "an exchange was made: nothing was kept from a refund"
    ended_at = state.ended_at or state.updated_at
    if now_ms > ended_at + window_ms:
        return f"the dispute window ({window_ms // 86_400_000} days from the decision) has passed"
    if state.status == Status.COMPLETED and full_minor(state) <= paid_minor(state):
        return "the refund was paid in full: nothing was kept to dispute"
    return ""


def dispute_requested(step: Step) -> SagaState:
    state, record = step.state, step.record
    if record.get("policy_json"):  # the whole policy (its stored form keeps a few rules)
        state = changed(state, policy=json.loads(record["policy_json"]))
    why = _refusal(state, step.now_ms, step.config.dispute_window_ms)
    if why:
        step.notes.append(f"dispute refused: {why}")
        if state.dispute.get("status") in (None, "REFUSED"):
            refused = {"status": "REFUSED", "reason": why, "requested_at": step.now_ms}
            return changed(state, dispute=refused)
        return state
    dispute_id = f"{state.return_id}-D{DISPUTE_NUMBER}"
    decide_by = step.now_ms + step.config.dispute_decision_deadline_ms
    first_station = str(state.inspection.get("station_id") or "")
    dispute = {
        "dispute_id": dispute_id,
        "status": "OPEN",
        "reason": record["reason"],
        "details": record.get("details") or "",
        "requested_by": record["requested_by"],
        "opened_at": step.now_ms,
        "decide_by": decide_by,
        "disputed_status": str(state.status),
        "disputed_outcome": dict(state.outcome),
        "paid_minor": paid_minor(state),
        "full_minor": full_minor(state),
        "currency": return_currency(state),
        "first_station_id": first_station,
        "first_scan_id": str(state.inspection.get("scan_id") or ""),
    }
    step.command(
        "DisputeOpened",
        {
            "dispute_id": dispute_id,
            "reason": dispute["reason"],
            "details": dispute["details"],
            "requested_by": dispute["requested_by"],
            "disputed_status": dispute["disputed_status"],
            "kept": Money(
                dispute["full_minor"] - dispute["paid_minor"], dispute["currency"]
            ).to_record(),
            "decide_by": decide_by,
        },
        "dispute",
        str(DISPUTE_NUMBER),
    )
    step.command(
        "ReinspectionRequested",
        {
            "dispute_id": dispute_id,
            "round": 2,
            "excluded_station_id": first_station,
            "first_scan_id": dispute["first_scan_id"],
        },
        "reinspection",
        str(DISPUTE_NUMBER),
    )
    ticket_id = open_ticket(
        step,
        "dispute",
        f"the buyer disputes the inspection ({dispute['reason']}): re-inspect at a station "
        f"other than {first_station or 'the first'} or rule on it",
        ticket_facts(
            state,
            dispute_id=dispute_id,
            reason=dispute["reason"],
            kept_minor=dispute["full_minor"] - dispute["paid_minor"],
            currency=dispute["currency"],
        ),
        str(DISPUTE_NUMBER),
    )
    step.notes.append(
        f"dispute {dispute_id} opened ({dispute['reason']}): re-inspection asked, case {ticket_id}"
    )
    state = changed(
        state,
        status=Status.DISPUTED,
        dispute={**dispute, "ticket_id": ticket_id},
        tries={**state.tries, str(Status.DISPUTE_REFUND_PENDING): 0},
    )
    return set_deadline(step, state, step.config.dispute_decision_deadline_ms)


def reinspected(step: Step) -> SagaState | None:
    """The second inspection decides: the policy's refund worked out from its grades."""
    state, record = step.state, step.record
    first = state.dispute.get("first_station_id")
    if first and record["station_id"] == first:
        step.notes.append(f"re-inspection at the first station {first} ignored")
        return None
    dispute = {
        **state.dispute,
        "reinspection": {
            "scan_id": record["scan_id"],
            "station_id": record["station_id"],
            "inspector_id": record["inspector_id"],
            "items": record["items"],
            "inspected_at": record["inspected_at"],
        },
    }
    state = changed(state, dispute=dispute)
    problem = inspection_problem(record["items"])
    if problem:
        return _decided(step, state, "UPHELD", 0, None, "reinspection", problem)
    try:
        plan = plan_for_items(state, record["items"])
    except PLAN_ERRORS as exc:
        return _decided(step, state, "UPHELD", 0, None, "reinspection", f"not computable: {exc}")
    if plan.rejection or not plan.refund:
        return _decided(step, state, "UPHELD", 0, None, "reinspection", plan.rejection or "")
    owed = min(
        plan.refund["amount"]["amount_minor"] - dispute["paid_minor"],
        dispute["full_minor"] - dispute["paid_minor"],
    )
    if owed <= 0:
        return _decided(step, state, "UPHELD", 0, None, "reinspection", "no more is refunded")
    liable = str(plan.refund.get("liable") or "SELLER")
    payer = "SELLER" if liable == "BUYER" else liable
    decision = (
        "FULL_REFUND"
        if owed == dispute["full_minor"] - dispute["paid_minor"]
        else ("PARTIAL_REFUND")
    )
    method = str(plan.refund.get("method") or "")
    return _pay(step, state, decision, owed, payer, "reinspection", method)


def ruled(step: Step) -> SagaState | None:
    """An agent's ruling through the dispute's case."""
    state, record = step.state, step.record
    dispute = state.dispute
    if record.get("dispute_id") and record["dispute_id"] != dispute.get("dispute_id"):
        step.notes.append(f"ruling on another dispute ({record['dispute_id']}) ignored")
        return None
    decision = str(record["decision"])
    agent = f"agent:{record['agent_id']}"
    kept = dispute["full_minor"] - dispute["paid_minor"]
    note = str(record.get("note") or "")
    if decision == "UPHELD":
        return _decided(step, state, "UPHELD", 0, None, agent, note)
    asked = (record.get("amount") or {}).get("amount_minor")
    currency = (record.get("amount") or {}).get("currency") or dispute["currency"]
    if decision == "FULL_REFUND":
        owed = kept
    elif currency != dispute["currency"] or not isinstance(asked, int) or asked <= 0:
        step.notes.append(
            f"ruling {decision} refused: needs a positive amount in {dispute['currency']}"
        )
        return None
    else:
        owed = min(asked, kept)
        if asked > kept:
            step.notes.append(f"ruling capped at what was kept: {kept} of {asked} asked")
    default_payer = "PLATFORM" if decision == "GOODWILL" else "SELLER"
    payer = str(record.get("liable") or default_payer)
    if decision == "GOODWILL":
        payer = "PLATFORM"
    if owed <= 0:
        return _decided(step, state, "UPHELD", 0, None, agent, "nothing was kept")
    method = str((state.refund or {}).get("method") or state.request.get("payment_method") or "")
    return _pay(step, state, decision, owed, payer, agent, method, note)


def _pay(
    step: Step,
    state: SagaState,
    decision: str,
    owed: int,
    payer: str,
    decided_by: str,
    method: str,
    note: str = "",
) -> SagaState:
    method = str(state.refund.get("method") or method)  # the way the return refunded
    account = state.request.get("refund_account") or {}
    if method == "BANK_TRANSFER" and (not account or account.get("number") == ERASED):
        step.notes.append("no bank account for the dispute's refund: paid as store credit")
        method = "STORE_CREDIT"
    dispute = {
        **state.dispute,
        "status": "PAYING",
        "decision": decision,
        "decided_by": decided_by,
        "liable": payer,
        "refund": {
            "amount": Money(owed, state.dispute["currency"]).to_record(),
            "method": method,
            "idempotency_key": dispute_key(state.return_id),
        },
        "note": note,
        "decided_at": step.now_ms,
    }
    step.notes.append(
        f"dispute {decision} by {decided_by}: {owed} {dispute['currency']} to pay, {payer} pays"
    )
    state = changed(state, status=Status.DISPUTE_REFUND_PENDING, dispute=dispute, timer={})
    return request_dispute_refund(step, state)


def request_dispute_refund(step: Step, state: SagaState) -> SagaState:
    """Sent again with the same idempotency key until the provider answers for good."""
    refund = state.dispute["refund"]
    lines = _refund_lines(state, refund["amount"])
    return send_command(
        step,
        state,
        Status.DISPUTE_REFUND_PENDING,
        "RefundRequested",
        {
            "amount": refund["amount"],
            "method": refund["method"],
            "lines": lines,
            "idempotency_key": refund["idempotency_key"],
            "breakdown": [],
            "liable": state.dispute["liable"],
            "paid_with": state.request.get("payment_method"),
            "policy_version": state.policy_version or None,
            "refund_account": state.request.get("refund_account")
            if refund["method"] == "BANK_TRANSFER"
            else None,
            "order_ref": str(state.request.get("order_ref", "")),
            "order_paid_minor": None,
            "fallback_from": None,
            "rules": [],
        },
        step.config.refund_deadline_ms,
        "dispute",
        str(DISPUTE_NUMBER),
    )


def _refund_lines(state: SagaState, amount: dict[str, Any]) -> list[dict[str, Any]]:
    """The difference as one line of the first returned sku (its units all)."""
    lines = state.request.get("lines") or [{"sku": "", "quantity_returned": 1}]
    quantity = sum(int(line.get("quantity_returned", 1)) for line in lines)
    return [{"sku": str(lines[0]["sku"]), "quantity": max(1, quantity), "amount": amount}]


def _ours(step: Step) -> bool:
    key = step.record.get("idempotency_key") or ""
    if key != dispute_key(step.state.return_id):
        step.notes.append(f"answer for another refund ({key or 'no key'}) ignored")
        return False
    return True


def dispute_refund_issued(step: Step) -> SagaState | None:
    if not _ours(step):
        return None
    r = step.record
    state = step.state
    refund = {
        **state.dispute["refund"],
        "status": r["status"],
        "provider": r["provider"],
        "provider_refund_id": r["provider_refund_id"],
        "issued_at": step.envelope["occurred_at"],
    }
    state = changed(state, dispute={**state.dispute, "refund": refund})
    return _decided(
        step,
        state,
        state.dispute["decision"],
        refund["amount"]["amount_minor"],
        refund,
        state.dispute["decided_by"],
        state.dispute.get("note", ""),
    )


def dispute_refund_failed(step: Step) -> SagaState | None:
    if not _ours(step):
        return None
    r = step.record
    state = step.state
    if r["retryable"] and not exhausted(step, state):
        return retry_later(step, state, f"dispute refund failed transiently: {r['decline_code']}")
    why = f"the dispute's refund failed: {r['decline_code']}"
    return finish(
        step,
        changed(state, dispute={**state.dispute, "status": "REFUND_FAILED"}),
        Status.NEEDS_ATTENTION,
        "REFUND",
        why,
        ("dispute-refund-failed", ticket_facts(state, decline_code=r["decline_code"])),
    )


def dispute_overdue(step: Step, state: SagaState) -> SagaState:
    return finish(
        step,
        changed(state, dispute={**state.dispute, "status": "OVERDUE"}),
        Status.NEEDS_ATTENTION,
        "INSPECTION",
        "the dispute was neither re-inspected nor ruled on before its deadline",
        ("dispute-overdue", ticket_facts(state, dispute_id=state.dispute["dispute_id"])),
    )


def _decided(
    step: Step,
    state: SagaState,
    decision: str,
    refunded_minor: int,
    refund: dict[str, Any] | None,
    decided_by: str,
    note: str,
) -> SagaState:
    """DisputeDecided (with the refund paid and who pays for it, for settlement); the
    return ends again: completed when money moved, else as it ended before."""
    dispute = state.dispute
    paid = refund is not None and refunded_minor > 0
    step.command(
        "DisputeDecided",
        {
            "dispute_id": dispute["dispute_id"],
            "decision": decision,
            "decided_by": decided_by,
            "note": note,
            "refund": Money(refunded_minor, dispute["currency"]).to_record() if paid else None,
            "liable": dispute.get("liable") if paid else None,
            "method": refund.get("method") if paid and refund else None,
            "provider": refund.get("provider") if paid and refund else None,
            "provider_refund_id": refund.get("provider_refund_id") if paid and refund else None,
            "idempotency_key": dispute_key(state.return_id) if paid else None,
            "order_ref": str(state.request.get("order_ref", "")) or None,
            "carrier_id": str(state.pickup.get("carrier", "")) or None,
            "decided_at": step.now_ms,
        },
        "dispute-decided",
        str(DISPUTE_NUMBER),
    )
    because = f" ({note})" if note else ""
    step.notes.append(f"dispute decided: {decision} by {decided_by}{because}")
    dispute = {
        **dispute,
        "status": "DECIDED",
        "decision": decision,
        "decided_by": decided_by,
        "decided_at": dispute.get("decided_at") or step.now_ms,
        "refunded_minor": refunded_minor if paid else 0,
        "note": note,
    }
    if paid:
        outcome = {"outcome": "COMPLETED", "dispute": decision}
        return changed(state, status=Status.COMPLETED, outcome=outcome, dispute=dispute, timer={})
    before = Status(dispute["disputed_status"])
    outcome = {**dispute["disputed_outcome"], "dispute": decision}
    return changed(state, status=before, outcome=outcome, dispute=dispute, timer={})
