"""A buyer disputes a decided return: re-inspection at another station or an agent's ruling,
the difference paid once with its own idempotency key, DisputeDecided for settlement (pure)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.decisions.after_sales.saga_figures import saga_figures
from services.decisions.saga import SagaState, Status, status_view
from services.decisions.saga import stored as stored_saga
from services.decisions.saga.state import DAY_MS
from services.eventing.handler_contract import HttpRequest
from services.eventing.request_fields import ApiError
from services.returns import handlers
from tests.support.buyer_signin import bearer
from tests.support.return_events import event
from tests.unit.test_handlers_returns import NOW as FRONT_DOOR_NOW
from tests.unit.test_handlers_returns import create, ports
from tests.unit.test_saga_refund_plan import (
    NOW,
    accepted_return,
    apply,
    item,
    refund_command,
    the_refund,
)

GRADES = ("A", "B", "C", "D")


def issued_for(return_id: str, command: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The refund service's RefundIssued for a RefundRequested."""
    return event(
        "RefundIssued",
        return_id,
        amount=command["amount"],
        method=command["method"],
        idempotency_key=command["idempotency_key"],
        **fields,
    )


def completed(grades=("C", "B", "B"), return_id: str = "RMA-DISPUTE-1", **overrides: Any):
    done = refund_command(accepted_return(return_id=return_id, **overrides), grades)
    command = the_refund(done)
    issued = issued_for(return_id, command)
    state = apply(done.state, "RefundIssued", issued).state
    assert state.status == Status.COMPLETED
    return state, command


def dispute(state: SagaState, event_id: str = "dispute-ask-1"):
    asked = event(
        "DisputeRequested",
        state.return_id,
        envelope={"event_id": event_id},
        reason="GRADE_WRONG",
        details="the item was sealed",
        photo_refs=[],
        requested_by="buyer",
    )
    return apply(state, "DisputeRequested", asked)


def reinspect(state: SagaState, grades, station: str = "ST-2", scan_id: str = "SCAN-R2"):
    items = [item("SKU-RED-M", grades[0]), item("SKU-RED-M", grades[1]), item("SKU-CAP", grades[2])]
    recorded = event(
        "InspectionRecorded", state.return_id, items=items, station_id=station, scan_id=scan_id
    )
    return apply(state, "InspectionRecorded", recorded)


def names(transition) -> list[str]:
    return [name for name, _ in transition.commands]


def deducted(command: dict[str, Any]) -> int:
    return sum(line["damage_deduction_minor"] for line in command["breakdown"])


def test_a_dispute_opens_a_reinspection_elsewhere_and_a_case():
    state, _ = completed()
    opened = dispute(state)
    assert opened.state.status == Status.DISPUTED
    assert names(opened) == ["DisputeOpened", "ReinspectionRequested", "TicketOpened"]
    commands = dict(opened.commands)
    assert commands["ReinspectionRequested"]["excluded_station_id"] == "ST-1"
    assert commands["TicketOpened"]["category"] == "dispute"
    assert commands["DisputeOpened"]["kept"]["amount_minor"] > 0
    assert status_view(opened.state)["dispute"]["status"] == "OPEN"
    again = dispute(opened.state)  # redelivered: nothing new
    assert again.duplicate and again.commands == ()


def test_a_reinspection_that_finds_no_damage_pays_the_deduction_once_with_its_own_key():
    state, first = completed()
    state = dispute(state).state
    decided = reinspect(state, ("B", "B", "B"))
    assert decided.state.status == Status.DISPUTE_REFUND_PENDING
    [(name, refund)] = decided.commands
    assert name == "RefundRequested"
    assert refund["idempotency_key"] == "RMA-DISPUTE-1-dispute-1"
    assert refund["amount"]["amount_minor"] == deducted(first)
    assert sum(line["amount"]["amount_minor"] for line in refund["lines"]) == deducted(first)
    assert refund["liable"] == "SELLER"  # a remorse return: the seller refunds its item
    issued = issued_for(state.return_id, refund, provider_refund_id="re_dispute_1")
    done = apply(decided.state, "RefundIssued", issued)
    assert done.state.status == Status.COMPLETED
    [(name, decision)] = done.commands
    assert name == "DisputeDecided"
    assert decision["decision"] == "PARTIAL_REFUND"
    assert decision["refund"] == refund["amount"]
    assert (decision["liable"], decision["provider_refund_id"]) == ("SELLER", "re_dispute_1")
    assert done.state.outcome == {"outcome": "COMPLETED", "dispute": "PARTIAL_REFUND"}
    # the answer redelivered, or a second dispute: no second payment
    assert apply(done.state, "RefundIssued", issued).duplicate
    second = dispute(done.state, "dispute-ask-2")
    assert second.commands == () and "already disputed" in second.state.history[-1]["note"]


def test_a_rescan_at_the_first_station_is_not_a_reinspection():
    state, _ = completed()
    state = dispute(state).state
    same = reinspect(state, ("A", "A", "A"), station="ST-1")
    assert same.ignored and same.state.status == Status.DISPUTED


def test_a_reinspection_that_confirms_the_damage_upholds_the_outcome():
    state, _ = completed()
    state = dispute(state).state
    upheld = reinspect(state, ("C", "B", "B"))
    assert names(upheld) == ["DisputeDecided"]
    assert dict(upheld.commands)["DisputeDecided"]["refund"] is None
    assert upheld.state.status == Status.COMPLETED
    assert upheld.state.dispute["decision"] == "UPHELD"


def test_a_return_refunded_in_full_or_still_running_or_too_old_cannot_be_disputed():
    full, _ = completed(("B", "B", "B"), "RMA-DISPUTE-FULL", reason_code="DEFECTIVE")
    refused = dispute(full)
    assert refused.commands == () and full.status == refused.state.status == Status.COMPLETED
    assert refused.state.dispute["status"] == "REFUSED"
    assert "paid in full" in refused.state.dispute["reason"]
    running = accepted_return(return_id="RMA-DISPUTE-RUN")
    assert "only a decided return" in dispute(running).state.dispute["reason"]
    old, _ = completed(return_id="RMA-DISPUTE-OLD")
    late = SagaState(**{**old.__dict__, "ended_at": old.ended_at - 15 * DAY_MS})
    assert "window" in dispute(late).state.dispute["reason"]


def test_an_agents_goodwill_is_capped_at_what_was_kept_and_charged_to_the_platform():
    state, _ = completed()
    state = dispute(state).state
    kept = state.dispute["full_minor"] - state.dispute["paid_minor"]
    ruling = event(
        "DisputeRuled",
        state.return_id,
        dispute_id=state.dispute["dispute_id"],
        case_id="CASE-1",
        decision="GOODWILL",
        amount={"amount_minor": kept + 10_000, "currency": "EUR"},
        liable="SELLER",
        agent_id="agent-7",
        note="loyal buyer",
    )
    ruled = apply(state, "DisputeRuled", ruling)
    [(name, refund)] = ruled.commands
    assert (name, refund["amount"]["amount_minor"], refund["liable"]) == (
        "RefundRequested",
        kept,
        "PLATFORM",
    )
    late = reinspect(ruled.state, ("A", "A", "A"))  # the first decision won
    assert late.commands == ()


def test_a_rejected_return_reinspected_as_matching_is_refunded_in_full():
    state = accepted_return(return_id="RMA-DISPUTE-REJ")
    rid = state.return_id
    state = apply(state, "PickupCompleted", event("PickupCompleted", rid)).state
    wrong = [item("SKU-RED-M", "B") | {"matches_order": False}]
    state = apply(state, "InspectionRecorded", event("InspectionRecorded", rid, items=wrong)).state
    state = apply(state, "IntakeCompleted", event("IntakeCompleted", rid)).state
    assert state.status == Status.REJECTED
    state = dispute(state).state
    decided = reinspect(state, ("A", "A", "A"))
    [(name, refund)] = decided.commands
    assert name == "RefundRequested" and refund["amount"]["amount_minor"] > 0
    # what the policy refunds for sound items: the return shipping is still kept (remorse)
    sound, _ = completed(grades=("A", "A", "A"), return_id="RMA-DISPUTE-SOUND")
    assert refund["amount"] == sound.refund["amount"]
    assert decided.state.dispute["decision"] == "PARTIAL_REFUND"


def test_a_dispute_nobody_decides_goes_to_a_person_at_its_deadline():
    state, _ = completed()
    state = dispute(state).state
    fired = event(
        "SagaStepTimedOut", state.return_id, timer_id=state.timer["id"], step="INSPECTION"
    )
    overdue = apply(state, "SagaStepTimedOut", fired)
    assert overdue.state.status == Status.NEEDS_ATTENTION
    assert "TicketOpened" in names(overdue)


@settings(max_examples=60, deadline=None)
@given(
    first=st.tuples(*[st.sampled_from(GRADES)] * 3),
    second=st.tuples(*[st.sampled_from(GRADES)] * 3),
    reason=st.sampled_from(["CHANGED_MIND", "DEFECTIVE"]),
)
def test_a_dispute_never_pays_more_than_was_kept_and_pays_at_most_once(first, second, reason):
    rid = f"RMA-DP-{next(NOW)}"
    done = refund_command(accepted_return(return_id=rid, reason_code=reason), first)
    if done.state.status != Status.REFUND_PENDING:
        return
    command = the_refund(done)
    issued = issued_for(rid, command)
    state = apply(done.state, "RefundIssued", issued).state
    opened = dispute(state)
    if opened.state.status != Status.DISPUTED:
        assert opened.commands == ()
        return
    decided = reinspect(opened.state, second)
    refunds = [c for name, c in decided.commands if name == "RefundRequested"]
    kept = opened.state.dispute["full_minor"] - opened.state.dispute["paid_minor"]
    assert len(refunds) <= 1
    for refund in refunds:
        assert 0 < refund["amount"]["amount_minor"] <= kept
        assert refund["idempotency_key"] == f"{rid}-dispute-1"
    assert decided.state.status in (Status.DISPUTE_REFUND_PENDING, Status.COMPLETED)


def test_the_front_door_takes_the_buyers_dispute_once_and_refuses_a_bad_one():
    wired = ports()
    return_id = create(wired).body["return_id"]
    body = json.dumps({"reason": "DAMAGE_NOT_MINE", "details": "the box was sealed"}).encode()
    mine = HttpRequest(body, bearer("B-1", FRONT_DOOR_NOW))
    first = asyncio.run(handlers.dispute_return(wired, mine, return_id))
    again = asyncio.run(handlers.dispute_return(wired, mine, return_id))
    assert first.status == again.status == 202
    assert first.body == again.body and first.body["status"] == "dispute_requested"
    name, record = wired.publish.records[-1][:2]
    assert (name, record["reason"], record["requested_by"]) == (
        "DisputeRequested",
        "DAMAGE_NOT_MINE",
        "buyer",
    )
    other = HttpRequest(body, bearer("B-OTHER", FRONT_DOOR_NOW))
    with pytest.raises(ApiError) as refused:
        asyncio.run(handlers.dispute_return(wired, other, return_id))
    assert (refused.value.status, refused.value.code) == (403, "not_your_return")
    unknown = HttpRequest(json.dumps({"reason": "BORED"}).encode(), mine.headers)
    with pytest.raises(ApiError) as refused:
        asyncio.run(handlers.dispute_return(wired, unknown, return_id))
    assert (refused.value.status, refused.value.fields[0].field) == (422, "reason")


def test_a_disputed_return_counts_one_dispute_and_ends_once_in_the_figures():
    state, _ = completed()
    opened = dispute(state).state
    paying = reinspect(opened, ("B", "B", "B")).state
    refund = paying.dispute["refund"]
    issued = issued_for(state.return_id, refund)
    done = apply(paying, "RefundIssued", issued).state
    steps = [saga_figures(a, b) for a, b in ((state, opened), (opened, paying), (paying, done))]
    assert [f.dispute_opened for f in steps] == [True, False, False]
    assert [f.dispute_decided for f in steps] == [None, None, ("PARTIAL_REFUND", "reinspection")]
    assert [f.finished for f in steps] == [None, None, None]  # it ended before the dispute


def test_a_stored_saga_disputed_works_from_the_whole_policy_the_coordinator_attaches():
    state, first = completed(return_id="RMA-DISPUTE-STORED")
    whole = json.dumps(state.policy)
    stored = stored_saga.loaded_state(stored_saga.slim_record(state))
    assert stored.policy != state.policy  # the stored form keeps a few rules only
    asked = event(
        "DisputeRequested",
        state.return_id,
        envelope={"event_id": "ask-stored"},
        reason="GRADE_WRONG",
        requested_by="buyer",
    )
    opened = apply(stored, "DisputeRequested", {**asked, "policy_json": whole}).state
    opened = stored_saga.loaded_state(stored_saga.slim_record(opened))  # kept whole now
    [(name, refund)] = reinspect(opened, ("B", "B", "B")).commands
    assert (name, refund["amount"]["amount_minor"]) == ("RefundRequested", deducted(first))


def test_a_bank_transfer_dispute_of_an_erased_buyer_is_paid_as_store_credit():
    account = {"holder": "Erika Muster", "number": "DE021203000000002020", "bank_code": "BYLADEM1"}
    state, _ = completed(
        return_id="RMA-DISPUTE-ERASED", payment_method="BANK_TRANSFER", refund_account=account
    )
    assert state.refund["method"] == "BANK_TRANSFER"
    erasure = event(
        "PersonalDataErasureRequested",
        state.return_id,
        envelope={"event_id": "erase-1"},
        buyer_id="B-1",
        requested_by="buyer",
    )
    erased = apply(state, "PersonalDataErasureRequested", erasure).state
    assert erased.request["refund_account"]["number"] == "[erased]"
    paying = reinspect(dispute(erased).state, ("B", "B", "B"))
    [(name, refund)] = paying.commands
    assert (name, refund["method"], refund["refund_account"]) == (
        "RefundRequested",
        "STORE_CREDIT",
        None,
    )
