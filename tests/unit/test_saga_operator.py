"""A person steering a saga (`boomerang saga retry|cancel|resume`): the coordinator's pure
handling of SagaRetryRequested, SagaCancelRequested and SagaResumeRequested."""

from __future__ import annotations

from typing import Any

from services.decisions.saga import NOT_CANCELLED_PREFIX, SagaState, Status
from tests.support.return_events import event
from tests.unit.test_saga_refund_plan import RID, accepted_return, apply, refund_command
from tests.unit.test_saga_refund_routes import command, declined, issued, refund_pending


def operator(state: SagaState, name: str, **fields: Any):
    return apply(state, name, event(name, RID, **fields))


def awaiting_inspection() -> SagaState:
    state = accepted_return()
    booked = operator(state, "PickupScheduled").state
    collected = operator(booked, "PickupCompleted").state
    assert collected.status == Status.AWAITING_INSPECTION
    return collected


# ---------------------------------------------------------------- retry


def test_a_retry_re_sends_the_refund_with_the_same_key_under_a_new_command_id():
    pending = refund_command(accepted_return())
    first = command(pending, "RefundRequested")
    retried = operator(pending.state, "SagaRetryRequested")
    again = command(retried, "RefundRequested")
    assert retried.state.status == Status.REFUND_PENDING
    assert again["idempotency_key"] == first["idempotency_key"]
    assert again["envelope"]["event_id"] != first["envelope"]["event_id"]
    assert again["envelope"]["attempt"] == first["envelope"]["attempt"] + 1
    assert "retry asked by oncall@example (partner fixed)" in retried.state.history[-1]["note"]
    assert retried.state.timer["kind"] == "deadline"


def test_a_retry_while_waiting_for_the_warehouse_sends_nothing_and_says_why():
    waiting = awaiting_inspection()
    retried = operator(waiting, "SagaRetryRequested")
    assert retried.ignored and retried.commands == ()
    assert retried.state.status == Status.AWAITING_INSPECTION
    assert "waiting for the warehouse scan" in retried.state.history[-1]["note"]


def test_a_retry_of_a_finished_saga_changes_nothing():
    done = issued(refund_pending()).state
    retried = operator(done, "SagaRetryRequested")
    assert retried.ignored and retried.state.status == Status.COMPLETED
    assert "does not apply to a saga in COMPLETED" in retried.state.history[-1]["note"]


# ---------------------------------------------------------------- cancel


def test_cancelling_a_booked_pickup_cancels_it_at_the_carrier_and_ends_cancelled():
    booked = operator(accepted_return(), "PickupScheduled").state
    cancelling = operator(booked, "SagaCancelRequested")
    assert cancelling.state.status == Status.CANCELLING
    cancel = command(cancelling, "PickupCancelRequested")
    assert cancel["idempotency_key"] == f"{RID}-pickup-cancel"
    assert "cancelled by oncall@example (buyer phoned support)" in cancel["reason"]
    done = operator(cancelling.state, "PickupCancelled", reason=cancel["reason"])
    assert done.state.status == Status.CANCELLED


def test_cancelling_a_collected_return_runs_its_compensations_and_ends_cancelled():
    cancelling = operator(awaiting_inspection(), "SagaCancelRequested")
    assert cancelling.state.status == Status.COMPENSATING
    assert command(cancelling, "PickupCancelRequested")
    too_late = f"{NOT_CANCELLED_PREFIX}: the carrier had already collected the parcel"
    done = operator(cancelling.state, "PickupCancelled", reason=too_late)
    assert done.state.status == Status.CANCELLED
    assert done.state.compensation["done"] == ["cancel-pickup"]
    ticket = command(done, "TicketOpened")
    assert ticket["category"] == "cancelled-by-operator"
    failed = command(done, "ReturnFailed")
    assert failed["outcome"] == "CANCELLED" and "buyer phoned support" in failed["reason"]


def test_cancelling_after_the_refund_was_paid_asks_a_person_instead():
    pending = refund_pending()
    paid_while_pending = issued(pending, "PENDING", settles_at=9).state
    settled = operator(paid_while_pending, "RefundSettled", settled_at=10).state
    assert settled.status == Status.COMPLETED  # a paid return is finished: nothing to cancel
    cancel = operator(settled, "SagaCancelRequested")
    assert cancel.ignored and cancel.state.status == Status.COMPLETED


def test_a_second_cancel_while_undoing_is_ignored():
    cancelling = operator(awaiting_inspection(), "SagaCancelRequested").state
    again = operator(cancelling, "SagaCancelRequested")
    assert again.ignored and again.commands == ()
    assert "already being undone" in again.state.history[-1]["note"]


def test_a_cancel_before_the_return_is_known_is_ignored():
    unknown = apply(None, "SagaCancelRequested", event("SagaCancelRequested", RID))
    assert unknown.ignored and unknown.state.status == Status.NEW


# ---------------------------------------------------------------- resume


def needs_attention_after_a_decline() -> SagaState:
    attention = declined(refund_pending(), "fraud_suspected", "NEEDS_ATTENTION").state
    assert attention.status == Status.NEEDS_ATTENTION
    return attention


def test_resume_refund_after_a_decline_pays_again_under_a_new_money_attempt():
    attention = needs_attention_after_a_decline()
    old_key = f"{RID}-refund-{attention.refund['attempt']}"
    resumed = operator(attention, "SagaResumeRequested", decision="REFUND")
    assert resumed.state.status == Status.REFUND_PENDING
    pay = command(resumed, "RefundRequested")
    assert pay["idempotency_key"] != old_key
    assert pay["amount"] == attention.refund["amount"]
    assert resumed.state.rules_fired[-1]["rule_id"] == "operator_decision"
    assert resumed.state.outcome == {}


def test_resume_store_credit_pays_the_same_amount_as_store_credit():
    attention = needs_attention_after_a_decline()
    resumed = operator(attention, "SagaResumeRequested", decision="STORE_CREDIT")
    pay = command(resumed, "RefundRequested")
    assert pay["method"] == "STORE_CREDIT"
    assert pay["amount"] == attention.refund["amount"]


def test_resume_reject_closes_the_return_without_paying():
    resumed = operator(needs_attention_after_a_decline(), "SagaResumeRequested", decision="REJECT")
    assert resumed.state.status == Status.REJECTED
    assert [name for name, _ in resumed.commands] == ["ReturnFailed"]


def test_resume_without_an_inspection_refuses_to_invent_a_refund():
    waiting = awaiting_inspection()
    stuck = operator(waiting, "SagaStepTimedOut", step="INSPECTION", timer_id=waiting.timer["id"])
    assert stuck.state.status == Status.NEEDS_ATTENTION
    resumed = operator(stuck.state, "SagaResumeRequested", decision="REFUND")
    assert resumed.ignored and resumed.state.status == Status.NEEDS_ATTENTION
    assert "not inspected" in resumed.state.history[-1]["note"]


def test_resume_of_a_return_that_does_not_need_attention_is_ignored():
    pending = refund_pending()
    resumed = operator(pending, "SagaResumeRequested", decision="REFUND")
    assert resumed.ignored and resumed.commands == ()


def test_an_unknown_decision_is_ignored_with_a_reason():
    resumed = operator(needs_attention_after_a_decline(), "SagaResumeRequested", decision="UNKNOWN")
    assert resumed.ignored
    assert "not one this coordinator knows" in resumed.state.history[-1]["note"]
