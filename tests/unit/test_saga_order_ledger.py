"""Returns of one order through the saga and the order refund ledger (the real pure ledger,
as the refund service runs it): partial returns add up to exactly what was paid, units held by
another return are refused, and an undone return gives its share back."""

from __future__ import annotations

from typing import Any

from services.decisions.refunds import order_refund_ledger
from services.decisions.saga import SagaState, Status
from tests.support.return_events import event, return_request_body
from tests.unit.test_saga_refund_plan import (
    ORDER_SNAPSHOT,
    accepted_return,
    apply,
    intake_completed,
    ledger_answer,
)
from tests.unit.test_saga_refund_routes import command, declined, fire_timer

PAID = 3 * 1999 + 500 - 1000  # ORDER_SNAPSHOT: 3 × L1, 1 × L2, a 10.00 voucher
ONE_L1 = [
    {
        "order_line_id": "L1",
        "sku": "SKU-RED-M",
        "quantity": 1,
        "quantity_bought": 3,
        "unit_price": {"amount_minor": 1999, "currency": "EUR"},
    }
]


def seller_fault_return(return_id: str, **overrides: Any) -> SagaState:
    return accepted_return(
        return_id=return_id, reason_code="DEFECTIVE", order=ORDER_SNAPSHOT, **overrides
    )


def through_the_ledger(state: SagaState, entry: dict | None = None):
    """Inspection and intake, then the ledger's answer applied: (transition, ledger entry)."""
    reserving = intake_completed(state)
    assert reserving.state.status == Status.RESERVING_REFUND
    assert "release-reservation" in reserving.state.compensations
    answer, entry = ledger_answer(reserving, entry)
    return apply(reserving.state, answer["envelope"]["event_type"], answer), entry


def test_after_intake_the_saga_asks_the_ledger_keyed_by_its_order():
    reserving = intake_completed(seller_fault_return("RMA-A"))
    reservation = command(reserving, "RefundReservationRequested")
    assert reservation["order_ref"] == "ORD-1"
    assert reservation["idempotency_key"] == "RMA-A-reservation"
    assert reservation["returning"] == [
        {"line_id": "L1", "units": 2},
        {"line_id": "L2", "units": 1},
    ]
    assert reservation["liable"] == "SELLER"
    assert reservation["order"] == reserving.state.request["order"]


def test_two_partial_returns_of_one_order_refund_exactly_what_was_paid():
    first, entry = through_the_ledger(seller_fault_return("RMA-A"))
    second, entry = through_the_ledger(seller_fault_return("RMA-B", lines=ONE_L1), entry)
    amounts = [
        command(first, "RefundRequested")["amount"]["amount_minor"],
        command(second, "RefundRequested")["amount"]["amount_minor"],
    ]
    assert sum(amounts) == PAID
    assert second.state.refund["other_returns"] == ["RMA-A"]
    assert second.state.refund["order_reserved_minor"] == PAID
    fired = [rule["rule_id"] for rule in second.state.rules_fired]
    assert "order_refund_ledger" in fired
    assert "order_refund_ledger" not in [rule["rule_id"] for rule in first.state.rules_fired]


def test_the_refund_command_carries_the_ledgers_breakdown():
    _, entry = through_the_ledger(seller_fault_return("RMA-A"))
    second, _ = through_the_ledger(seller_fault_return("RMA-B", lines=ONE_L1), entry)
    refund = command(second, "RefundRequested")
    assert (
        sum(line["amount_minor"] for line in refund["breakdown"])
        == refund["amount"]["amount_minor"]
    )
    assert [line["line_id"] for line in refund["breakdown"]] == ["L1"]


def test_units_already_held_by_another_return_need_a_person():
    _, entry = through_the_ledger(seller_fault_return("RMA-A"))
    again, _ = through_the_ledger(seller_fault_return("RMA-C"), entry)
    assert again.state.status == Status.NEEDS_ATTENTION
    assert "returning 2 after 2 of 3 bought" in again.state.outcome["reason"]
    ticket = command(again, "TicketOpened")
    assert ticket["category"] == "refund-units-already-returned"
    assert ticket["facts"]["held_by"] == "RMA-A"
    assert not [name for name, _ in again.commands if name == "RefundRequested"]


def test_a_lost_answer_is_asked_for_again_with_the_same_key():
    reserving = intake_completed(seller_fault_return("RMA-A"))
    again = fire_timer(reserving.state)
    assert again.state.status == Status.RESERVING_REFUND
    first = command(reserving, "RefundReservationRequested")
    second = command(again, "RefundReservationRequested")
    assert first["idempotency_key"] == second["idempotency_key"]
    assert first["envelope"]["event_id"] != second["envelope"]["event_id"]  # the next try


def test_a_refund_undone_for_good_gives_its_share_back_to_the_order():
    pending, entry = through_the_ledger(seller_fault_return("RMA-A"))
    fallback = declined(pending.state, "account_closed", "FALLBACK").state
    failed = declined(fallback, "account_closed", "FALLBACK")
    assert failed.state.status == Status.COMPENSATING
    release = command(failed, "RefundReservationReleaseRequested")
    assert release["order_ref"] == "ORD-1"
    entry, answer = order_refund_ledger.release(entry, "RMA-A", release)
    released = apply(
        failed.state,
        "RefundReservationReleased",
        event("RefundReservationReleased", "RMA-A", **answer.body),
    )
    assert "release-reservation" in released.state.compensation["done"]
    assert [name for name, _ in released.commands] == ["IntakeReverseRequested"]
    # the order's units are free again: the buyer's next return of them is refunded
    again, _ = through_the_ledger(seller_fault_return("RMA-D"), entry)
    assert again.state.status == Status.REFUND_PENDING


def test_an_exchange_holds_its_units_before_the_replacement_is_ordered():
    first_line = return_request_body()["lines"][:1]  # an exchange is for one product
    done, entry = through_the_ledger(
        seller_fault_return(
            "RMA-X", resolution="EXCHANGE", exchange_sku="SKU-RED-L", lines=first_line
        )
    )
    assert done.state.status == Status.EXCHANGE_PENDING
    assert [name for name, _ in done.commands] == ["ReplacementOrderRequested"]
    assert [r["return_id"] for r in order_refund_ledger.summary(entry)["live_returns"]] == ["RMA-X"]


def test_a_return_without_the_orders_snapshot_still_goes_through_the_ledger():
    reserving = intake_completed(
        accepted_return(return_id="RMA-N", with_order=False, reason_code="DEFECTIVE")
    )
    assert reserving.state.status == Status.RESERVING_REFUND
    reservation = command(reserving, "RefundReservationRequested")
    assert reservation["order_complete"] is False
    assert [line["line_id"] for line in reservation["order"]["lines"]] == ["L1", "L2"]
    assert reservation["order"]["discount_minor"] == 0


def test_two_returns_of_the_same_units_without_a_snapshot_pay_once():
    """The hole the ledger closes: each return alone looks fine (2 of 3 bought)."""
    first, entry = through_the_ledger(
        accepted_return(return_id="RMA-N1", with_order=False, reason_code="DEFECTIVE")
    )
    assert first.state.status == Status.REFUND_PENDING
    second, _ = through_the_ledger(
        accepted_return(return_id="RMA-N2", with_order=False, reason_code="DEFECTIVE"), entry
    )
    assert second.state.status == Status.NEEDS_ATTENTION
    assert "returning 2 after 2 of 3 bought" in second.state.outcome["reason"]
    assert not [name for name, _ in second.commands if name == "RefundRequested"]
