"""How the saga gets the money (or the replacement) to the buyer after intake: pending refunds
settled by webhook, declines mapped to retry / fallback / a person, bank transfers waiting
for the buyer's account, and exchanges."""

from __future__ import annotations

from typing import Any

from services.decisions.saga import DEFAULT_CONFIG, SagaState, Status, decide, status_view
from tests.support.return_events import event
from tests.unit.test_saga_refund_plan import RID, accepted_return, apply, refund_command

ACCOUNT = {"holder": "Erika Mustermann", "number": "DE89370400440532013000", "bank_code": "COBA"}


def refund_pending(**overrides: Any) -> SagaState:
    done = refund_command(accepted_return(**overrides))
    assert done.state.status == Status.REFUND_PENDING
    return done.state


def issued(state: SagaState, status: str = "SUCCEEDED", **fields: Any):
    amount = state.refund["amount"]
    record = event("RefundIssued", RID, status=status, amount=amount, **fields)
    return apply(state, "RefundIssued", record)


def declined(state: SagaState, code: str, action: str):
    record = event(
        "RefundFailed",
        RID,
        amount=state.refund["amount"],
        method=state.refund["method"],
        decline_code=code,
        next_action=action,
    )
    return apply(state, "RefundFailed", record)


def command(transition, name: str) -> dict[str, Any]:
    [found] = [record for command_name, record in transition.commands if command_name == name]
    return found


def fire_timer(state: SagaState):
    timer = state.timer
    record = event("SagaStepTimedOut", RID, step=timer["step"], timer_id=timer["id"])
    return apply(state, "SagaStepTimedOut", record)


def test_a_pending_refund_completes_when_the_provider_settles_it():
    pending = issued(refund_pending(), "PENDING", settles_at=123).state
    assert pending.status == Status.REFUND_PENDING
    settled = apply(pending, "RefundSettled", event("RefundSettled", RID, settled_at=99))
    assert settled.state.status == Status.COMPLETED
    assert settled.state.refund["status"] == "SUCCEEDED"
    assert settled.state.refund["settled_at"] == 99
    assert [name for name, _ in settled.commands] == ["ReturnCompleted"]


def test_a_settlement_that_overtakes_the_answer_completes_the_return_when_the_answer_comes():
    state = refund_pending()
    early = apply(state, "RefundSettled", event("RefundSettled", RID))
    assert early.state.status == Status.REFUND_PENDING and early.commands == ()
    done = issued(early.state, "PENDING")
    assert done.state.status == Status.COMPLETED
    assert done.state.refund["status"] == "SUCCEEDED"


def test_the_settlement_of_another_refund_is_ignored():
    pending = issued(refund_pending(), "PENDING").state
    other = apply(pending, "RefundSettled", event("RefundSettled", RID, provider_refund_id="RF-9"))
    assert other.ignored and other.state.status == Status.REFUND_PENDING


def test_a_closed_account_falls_back_to_store_credit_with_a_new_key_and_says_why():
    state = refund_pending()
    fallback = declined(state, "account_closed", "FALLBACK")
    assert fallback.state.status == Status.REFUND_PENDING
    again = command(fallback, "RefundRequested")
    assert again["method"] == "STORE_CREDIT"
    assert again["fallback_from"] == "CARD"
    assert again["idempotency_key"] == f"{RID}-refund-2"
    assert again["amount"] == state.refund["amount"]
    assert "decline_fallback" in [rule["rule_id"] for rule in again["rules"]]
    view = status_view(fallback.state)
    assert view["refund"]["fallback"] == {
        "from": "CARD",
        "decline_code": "account_closed",
        "reason": "refund declined: account_closed",
    }
    paid = issued(fallback.state, idempotency_key=f"{RID}-refund-2")
    assert paid.state.status == Status.COMPLETED


def test_store_credit_declined_too_compensates_the_return():
    fallback = declined(refund_pending(), "account_closed", "FALLBACK").state
    failed = declined(fallback, "account_closed", "FALLBACK")
    assert failed.state.status == Status.COMPENSATING
    assert "no fallback left" in failed.state.compensation["reason"]


def test_a_retry_decline_asks_again_with_a_new_key_after_a_backoff():
    first = declined(refund_pending(), "do_not_honor", "RETRY")
    assert first.commands == () and first.state.timer["kind"] == "retry"
    again = fire_timer(first.state)
    assert command(again, "RefundRequested")["idempotency_key"] == f"{RID}-refund-2"
    assert command(again, "RefundRequested")["method"] == "CARD"


def test_retry_declines_beyond_the_limit_fall_back():
    state = refund_pending()
    for attempt in range(DEFAULT_CONFIG.decline_retry_limit):
        state = fire_timer(declined(state, "do_not_honor", "RETRY").state).state
        assert state.refund["attempt"] == attempt + 2
    last = declined(state, "do_not_honor", "RETRY")
    assert command(last, "RefundRequested")["method"] == "STORE_CREDIT"


def test_a_decline_a_person_must_judge_opens_a_ticket_and_keeps_the_stock():
    attention = declined(refund_pending(), "fraud_suspected", "NEEDS_ATTENTION")
    assert attention.state.status == Status.NEEDS_ATTENTION
    assert command(attention, "TicketOpened")["category"] == "refund-declined"
    assert not [name for name, _ in attention.commands if name == "IntakeReverseRequested"]


def test_a_pending_transfer_that_bounces_falls_back_to_store_credit():
    pending = issued(refund_pending(), "PENDING").state
    bounced = declined(pending, "account_closed", "FALLBACK")
    assert command(bounced, "RefundRequested")["method"] == "STORE_CREDIT"


def test_a_bank_transfer_without_an_account_waits_for_the_buyer():
    done = refund_command(accepted_return(payment_method="BANK_TRANSFER"))
    assert done.state.status == Status.AWAITING_BUYER_DETAILS
    asked = command(done, "BuyerDetailsRequested")
    assert asked["needed"] == "refund_account"
    assert asked["deadline_at"] == done.state.timer["due_at"]
    given = apply(
        done.state,
        "BuyerDetailsProvided",
        event("BuyerDetailsProvided", RID, refund_account=ACCOUNT),
    )
    assert given.state.status == Status.REFUND_PENDING
    refund = command(given, "RefundRequested")
    assert (refund["method"], refund["refund_account"]) == ("BANK_TRANSFER", ACCOUNT)
    assert status_view(given.state)["request"]["refund_account"]["number"] == "****3000"


def test_no_account_before_the_deadline_pays_store_credit_instead():
    waiting = refund_command(accepted_return(payment_method="BANK_TRANSFER")).state
    late = fire_timer(waiting)
    refund = command(late, "RefundRequested")
    assert refund["method"] == "STORE_CREDIT"
    assert late.state.refund["fallback"]["decline_code"] == "no_bank_account"


def test_an_account_given_early_is_used_without_waiting():
    state = accepted_return(payment_method="BANK_TRANSFER")
    state = apply(
        state, "BuyerDetailsProvided", event("BuyerDetailsProvided", RID, refund_account=ACCOUNT)
    ).state
    done = refund_command(state)
    assert command(done, "RefundRequested")["refund_account"] == ACCOUNT


def test_cash_on_delivery_in_de_goes_by_bank_transfer_per_policy():
    done = refund_command(accepted_return(payment_method="COD"))
    assert done.state.status == Status.AWAITING_BUYER_DETAILS
    assert done.state.refund["method"] == "BANK_TRANSFER"


# an exchange is for the variants of one product: three of the red shirt, for another size
EXCHANGED_LINES = [
    {
        "order_line_id": "L1",
        "sku": "SKU-RED-M",
        "quantity": 3,
        "quantity_bought": 3,
        "unit_price": {"amount_minor": 1999, "currency": "EUR"},
    }
]


def exchange_return(**overrides: Any):
    fields = {"lines": EXCHANGED_LINES, **overrides}
    return refund_command(
        accepted_return(resolution="EXCHANGE", exchange_sku="SKU-RED-L", **fields)
    )


def test_an_exchange_orders_a_replacement_instead_of_a_refund():
    done = exchange_return()
    assert done.state.status == Status.EXCHANGE_PENDING
    replacement = command(done, "ReplacementOrderRequested")
    assert (replacement["sku"], replacement["quantity"]) == ("SKU-RED-L", 3)
    assert replacement["idempotency_key"] == f"{RID}-replacement"
    placed = apply(done.state, "ReplacementOrderPlaced", event("ReplacementOrderPlaced", RID))
    assert placed.state.status == Status.COMPLETED
    assert placed.state.outcome["resolution"] == "EXCHANGE"
    assert command(placed, "ReturnCompleted")["refunded"] is None
    assert placed.state.refund == {}


def test_an_exchange_out_of_stock_in_de_pays_store_credit_per_policy():
    done = exchange_return()
    out = apply(done.state, "ReplacementOutOfStock", event("ReplacementOutOfStock", RID))
    refund = command(out, "RefundRequested")
    assert refund["method"] == "STORE_CREDIT"
    assert "exchange_out_of_stock" in [rule["rule_id"] for rule in refund["rules"]]


def test_an_exchange_out_of_stock_in_id_refunds_the_way_the_buyer_paid():
    body = {
        "market": "ID",
        "payment_method": "EWALLET",
        "pickup_address": "Jl. Sudirman 1, Jakarta",
        "lines": [
            {
                "order_line_id": "L1",
                "sku": "SKU-RED-M",
                "quantity": 3,
                "quantity_bought": 3,
                "unit_price": {"amount_minor": 149000, "currency": "IDR"},
            }
        ],
    }
    done = exchange_return(**body)
    out = apply(done.state, "ReplacementOutOfStock", event("ReplacementOutOfStock", RID))
    assert command(out, "RefundRequested")["method"] == "EWALLET"


def test_an_item_damaged_by_the_buyer_gets_the_reduced_refund_instead_of_a_replacement():
    exchanged = accepted_return(
        resolution="EXCHANGE", exchange_sku="SKU-RED-L", lines=EXCHANGED_LINES
    )
    done = refund_command(exchanged, grades=("D", "D", "D"))
    refund = command(done, "RefundRequested")
    assert done.state.status == Status.REFUND_PENDING
    assert not [name for name, _ in done.commands if name == "ReplacementOrderRequested"]
    assert done.state.refund["liability"]["refund"] == "REDUCED"
    assert sum(line["damage_deduction_minor"] for line in refund["breakdown"]) > 0
    assert "exchange_refused" in [rule["rule_id"] for rule in done.state.rules_fired]


def test_a_replacement_without_an_answer_is_asked_again_with_the_same_key():
    done = exchange_return()
    again = fire_timer(done.state)
    assert command(again, "ReplacementOrderRequested")["idempotency_key"] == f"{RID}-replacement"


def test_a_decline_of_an_earlier_attempt_does_not_fail_the_fallback():
    state = refund_pending()
    fallback = declined(state, "card_expired", "FALLBACK").state
    stale = event(
        "RefundFailed",
        RID,
        amount=state.refund["amount"],
        method="CARD",
        decline_code="card_expired",
        next_action="FALLBACK",
        idempotency_key=f"{RID}-refund-1",
    )
    again = apply(fallback, "RefundFailed", stale)
    assert again.ignored and again.state.status == Status.REFUND_PENDING
    assert "earlier refund attempt" in again.state.history[-1]["note"]
    paid = issued(fallback, idempotency_key=f"{RID}-refund-2")
    assert paid.state.status == Status.COMPLETED


def test_an_answer_of_an_earlier_attempt_does_not_complete_the_return():
    fallback = declined(refund_pending(), "card_expired", "FALLBACK").state
    stale = issued(fallback, idempotency_key=f"{RID}-refund-1")
    assert stale.ignored and stale.state.status == Status.REFUND_PENDING


# ------------------------------------------------- the policy's refund deadline per method

DAY_MS = 86_400_000


def fire_at(state: SagaState, now_ms: int):
    timer = state.timer
    record = event("SagaStepTimedOut", RID, step=timer["step"], timer_id=timer["id"])
    return decide(state, "SagaStepTimedOut", record, now_ms, DEFAULT_CONFIG)


def test_the_refund_is_due_within_the_policys_days_for_its_method():
    state = refund_pending()  # DE, paid by card: 10 days
    assert state.refund["deadline_days"] == 10
    decided_at = state.history[-1]["at"]
    assert state.refund["due_by"] == decided_at + 10 * DAY_MS
    assert status_view(state)["refund"]["due_by"] == state.refund["due_by"]


def test_a_pending_refund_past_its_due_date_asks_a_person_and_keeps_waiting():
    pending = issued(refund_pending(), "PENDING").state
    assert pending.timer["due_at"] == pending.refund["due_by"]  # before the 30-day cap
    overdue = fire_at(pending, pending.refund["due_by"])
    assert overdue.state.status == Status.REFUND_PENDING  # the money may be on its way
    ticket = command(overdue, "TicketOpened")
    assert ticket["category"] == "refund-overdue"
    assert ticket["facts"]["method"] == "CARD"
    assert overdue.state.refund["overdue_ticket"] == ticket["ticket_id"]
    cap = overdue.state.refund["pending_since"] + DEFAULT_CONFIG.settlement_deadline_ms
    assert overdue.state.timer["due_at"] == cap
    fired = [rule["effect"] for rule in overdue.state.rules_fired]
    assert any(effect.startswith("overdue: ticket") for effect in fired)
    settled = apply(overdue.state, "RefundSettled", event("RefundSettled", RID))
    assert settled.state.status == Status.COMPLETED


def test_a_refund_still_pending_at_the_settlement_deadline_is_compensated_after_one_ticket():
    pending = issued(refund_pending(), "PENDING").state
    overdue = fire_at(pending, pending.refund["due_by"]).state
    given_up = fire_at(overdue, overdue.timer["due_at"])
    assert given_up.state.status == Status.COMPENSATING
    assert [name for name, _ in given_up.commands] == ["RefundVoidRequested"]


def test_a_retry_by_the_same_method_keeps_the_first_due_date():
    pending = refund_pending()
    declined_once = declined(pending, "processor_unavailable", "RETRY").state
    retried = fire_timer(declined_once).state
    assert retried.refund["method"] == "CARD" and retried.refund["attempt"] == 2
    assert retried.refund["due_by"] == pending.refund["due_by"]


def test_a_fallback_by_another_method_is_due_by_that_methods_deadline():
    pending = issued(refund_pending(), "PENDING").state
    overdue = fire_at(pending, pending.refund["due_by"]).state
    fallback = declined(overdue, "account_closed", "FALLBACK").state
    refund = fallback.refund
    assert refund["method"] == "STORE_CREDIT"
    assert refund["deadline_days"] == 0  # DE: store credit at once
    assert refund["due_by"] == fallback.history[-1]["at"]
    assert not {"overdue_ticket", "pending_since", "provider_refund_id"} & set(refund)


def test_a_second_attempt_overdue_opens_its_own_ticket():
    pending = issued(refund_pending(), "PENDING").state
    first = command(fire_at(pending, pending.refund["due_by"]), "TicketOpened")
    fallback = declined(pending, "account_closed", "FALLBACK").state
    # store credit is due at once in DE: pending already means overdue
    again = issued(
        fallback, "PENDING", provider_refund_id="RF-2", idempotency_key=f"{RID}-refund-2"
    )
    second = command(again, "TicketOpened")
    assert second["ticket_id"] != first["ticket_id"]
    assert again.state.refund["overdue_ticket"] == second["ticket_id"]


def test_a_bank_transfer_is_due_from_when_the_buyer_gives_the_account():
    waiting = refund_command(accepted_return(payment_method="BANK_TRANSFER")).state
    assert waiting.status == Status.AWAITING_BUYER_DETAILS
    given = apply(
        waiting, "BuyerDetailsProvided", event("BuyerDetailsProvided", RID, refund_account=ACCOUNT)
    ).state
    assert given.refund["due_by"] == given.history[-1]["at"] + 3 * DAY_MS  # DE: 3 days
