"""The order refund ledger: several returns of one order, worked out one after another, with
releases in any order — the live returns never hold more than was paid, and once every unit is
back they hold exactly what was paid."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from services.decisions.refunds import order_refund_ledger as ledger
from services.decisions.refunds.order_model import Order
from tests.unit.test_refund_arithmetic import orders

ORDER = {
    "currency": "EUR",
    "lines": [
        {"line_id": "L1", "sku": "SKU-MUG", "unit_price_minor": 1000, "quantity": 3},
        {"line_id": "L2", "sku": "SKU-TEE", "unit_price_minor": 2500, "quantity": 1},
    ],
    "discount_minor": 1000,  # 55.00 − 10.00 voucher + 4.99 shipping = 49.99 paid
    "shipping_fee_minor": 499,
}
NO_FEES = {
    "return_shipping_fee_minor": 0,
    "restocking_fee_bp": 0,
    "restocking_fee_flat_minor": 0,
    "damage_deduction_bp": 0,
}


def command(returning: dict[str, int], liable: str = "SELLER", order=None, fees=None) -> dict:
    return {
        "order_ref": "ORD-1",
        "order": order or ORDER,
        "returning": [{"line_id": k, "units": v} for k, v in returning.items()],
        "liable": liable,
        "fees": fees or NO_FEES,
    }


def release_command(reason: str = "refund declined for good") -> dict:
    return {"order_ref": "ORD-1", "reason": reason}


def test_the_first_return_of_an_order_is_worked_out_as_if_alone():
    entry, answer = ledger.reserve(None, "RMA-1", command({"L1": 1}))
    assert answer.name == "RefundReserved"
    assert answer.body["amount"] == {"amount_minor": 818 + 124, "currency": "EUR"}
    assert answer.body["other_returns"] == []
    assert answer.body["order_paid_minor"] == 4999
    assert entry["returns"]["RMA-1"]["status"] == ledger.RESERVED


def test_every_unit_back_over_three_returns_refunds_exactly_what_was_paid():
    entry = None
    totals = []
    returns = (("RMA-1", {"L1": 1}), ("RMA-2", {"L1": 1}), ("RMA-3", {"L1": 1, "L2": 1}))
    for return_id, returning in returns:
        entry, answer = ledger.reserve(entry, return_id, command(returning))
        totals.append(answer.body["amount"]["amount_minor"])
    assert sum(totals) == 4999
    assert answer.body["order_reserved_minor"] == 4999
    assert answer.body["other_returns"] == ["RMA-1", "RMA-2"]


def test_units_held_by_other_returns_cannot_be_returned_again():
    entry, _ = ledger.reserve(None, "RMA-1", command({"L2": 1}))
    entry, answer = ledger.reserve(entry, "RMA-2", command({"L2": 1}))
    assert answer.name == "RefundReservationRefused"
    assert answer.body["reason"] == "line L2: returning 1 after 1 of 1 bought"
    assert answer.body["held_by"] == ["RMA-1"]
    assert "RMA-2" not in entry["returns"]


def test_asking_again_answers_what_was_reserved_the_first_time():
    entry, first = ledger.reserve(None, "RMA-1", command({"L1": 2}))
    entry, _ = ledger.reserve(entry, "RMA-2", command({"L1": 1}))
    again_entry, again = ledger.reserve(entry, "RMA-1", command({"L1": 2}))
    assert again == first
    assert again_entry == entry


def test_a_released_return_frees_its_units_for_the_next_return_at_the_same_value():
    entry, first = ledger.reserve(None, "RMA-1", command({"L1": 1}))
    entry, _ = ledger.reserve(entry, "RMA-2", command({"L1": 1}))
    entry, released = ledger.release(entry, "RMA-1", release_command())
    assert released.body["released_minor"] == first.body["amount"]["amount_minor"]
    entry, third = ledger.reserve(entry, "RMA-3", command({"L1": 1}))
    positions = json.loads(third.body["unit_positions_json"])
    assert positions["lines"] == {"L1": [[0, 1]]}  # the released position, not the next one
    assert third.body["amount"] == first.body["amount"]
    assert third.body["other_returns"] == ["RMA-2"]


def test_a_released_return_stays_released_when_its_reservation_is_replayed():
    entry, _ = ledger.reserve(None, "RMA-1", command({"L2": 1}))
    entry, _ = ledger.release(entry, "RMA-1", release_command())
    entry, answer = ledger.reserve(entry, "RMA-1", command({"L2": 1}))
    assert answer.name == "RefundReservationRefused"
    assert "released" in answer.body["reason"]
    _, again = ledger.release(entry, "RMA-1", release_command())
    assert again.body["released_minor"] == 2500 - 455 + 124  # the same answer as the first time


def test_releasing_a_return_never_reserved_records_it_so_a_late_reservation_is_refused():
    entry, answer = ledger.release(None, "RMA-9", release_command())
    assert answer.body["released_minor"] == 0
    _, late = ledger.reserve(entry, "RMA-9", command({"L1": 1}))
    assert late.name == "RefundReservationRefused"


def test_a_different_order_snapshot_than_earlier_returns_used_is_refused():
    entry, _ = ledger.reserve(None, "RMA-1", command({"L1": 1}))
    changed = {**ORDER, "discount_minor": 0}
    _, answer = ledger.reserve(entry, "RMA-2", command({"L1": 1}, order=changed))
    assert answer.name == "RefundReservationRefused"
    assert "differs" in answer.body["reason"]


def test_lines_the_order_does_not_have_are_refused_with_the_reason():
    _, answer = ledger.reserve(None, "RMA-1", command({"L9": 1}))
    assert answer.name == "RefundReservationRefused"
    assert "no line 'L9'" in answer.body["reason"]


def test_a_buyer_liable_return_bears_its_fees_and_takes_no_shipping_position():
    fees = {**NO_FEES, "return_shipping_fee_minor": 300}
    _, answer = ledger.reserve(None, "RMA-1", command({"L1": 1}, liable="BUYER", fees=fees))
    assert answer.body["amount"]["amount_minor"] == 818 - 300
    assert json.loads(answer.body["unit_positions_json"])["shipping"] == []


def test_the_summary_lists_live_and_released_returns():
    entry, _ = ledger.reserve(None, "RMA-1", command({"L1": 1}))
    entry, _ = ledger.reserve(entry, "RMA-2", command({"L2": 1}))
    entry, _ = ledger.release(entry, "RMA-1", release_command())
    view = ledger.summary(entry)
    assert [r["return_id"] for r in view["live_returns"]] == ["RMA-2"]
    assert view["released_returns"] == ["RMA-1"]
    assert view["order_paid_minor"] == 4999


# ------------------------------------------------- returns without the order's snapshot


def lines_only(*lines: tuple[str, str, int, int]) -> dict:
    """What the saga sends for a return without a snapshot: its lines (id, sku, unit price,
    units bought), no discount, no shipping."""
    return {
        "currency": "EUR",
        "lines": [
            {"line_id": i, "sku": sku, "unit_price_minor": price, "quantity": bought}
            for i, sku, price, bought in lines
        ],
        "discount_minor": 0,
        "shipping_fee_minor": 0,
    }


MUGS = ("L1", "SKU-MUG", 1000, 3)
TEE = ("L2", "SKU-TEE", 2500, 1)


def lines_command(returning: dict[str, int], *lines: tuple[str, str, int, int]) -> dict:
    return {**command(returning, order=lines_only(*lines)), "order_complete": False}


def test_without_a_snapshot_the_same_units_cannot_be_refunded_twice():
    entry, first = ledger.reserve(None, "RMA-1", lines_command({"L1": 3}, MUGS))
    assert first.body["amount"]["amount_minor"] == 3000
    assert "without the order's snapshot" in first.body["notes"][-1]
    entry, again = ledger.reserve(entry, "RMA-2", lines_command({"L1": 1}, MUGS))
    assert again.name == "RefundReservationRefused"
    assert again.body["reason"] == "line L1: returning 1 after 3 of 3 bought"
    assert again.body["held_by"] == ["RMA-1"]


def test_without_a_snapshot_returns_of_other_lines_add_up_line_by_line():
    entry, first = ledger.reserve(None, "RMA-1", lines_command({"L1": 2}, MUGS))
    entry, second = ledger.reserve(entry, "RMA-2", lines_command({"L2": 1}, TEE))
    entry, third = ledger.reserve(entry, "RMA-3", lines_command({"L1": 1}, MUGS))
    assert [a.body["amount"]["amount_minor"] for a in (first, second, third)] == [2000, 2500, 1000]
    assert third.body["order_reserved_minor"] == 5500
    assert third.body["other_returns"] == ["RMA-1", "RMA-2"]
    assert [line["line_id"] for line in entry["order"]["lines"]] == ["L1", "L2"]
    assert entry["order_complete"] is False


def test_without_a_snapshot_a_line_described_differently_than_before_is_refused():
    entry, _ = ledger.reserve(None, "RMA-1", lines_command({"L1": 1}, MUGS))
    dearer = ("L1", "SKU-MUG", 1200, 3)
    _, answer = ledger.reserve(entry, "RMA-2", lines_command({"L1": 1}, dearer))
    assert answer.name == "RefundReservationRefused"
    assert "differs from what earlier returns of the order said" in answer.body["reason"]


def test_without_a_snapshot_a_known_snapshot_values_the_lines_with_their_shares():
    entry, _ = ledger.reserve(None, "RMA-1", command({"L1": 1}))
    _, with_snapshot = ledger.reserve(entry, "RMA-2", command({"L1": 1}))
    entry, second = ledger.reserve(entry, "RMA-2", lines_command({"L1": 1}, MUGS))
    assert second.name == "RefundReserved"
    # the same value as the snapshot's second mug (voucher and shipping shares), not 1000
    assert second.body["amount"] == with_snapshot.body["amount"]
    assert second.body["amount"]["amount_minor"] != 1000
    assert entry["order_complete"] is True


def test_without_a_snapshot_a_line_the_known_snapshot_lacks_is_refused():
    entry, _ = ledger.reserve(None, "RMA-1", command({"L1": 1}))
    _, answer = ledger.reserve(entry, "RMA-2", lines_command({"L7": 1}, ("L7", "SKU-X", 100, 1)))
    assert answer.name == "RefundReservationRefused"
    assert answer.body["reason"] == "line L7 is not in the order's snapshot"


def test_without_a_snapshot_an_entry_kept_before_orders_were_kept_goes_to_a_person():
    entry, _ = ledger.reserve(None, "RMA-1", command({"L1": 1}))
    older = {k: v for k, v in entry.items() if k not in ("order", "order_complete")}
    _, answer = ledger.reserve(older, "RMA-2", lines_command({"L2": 1}, TEE))
    assert answer.name == "RefundReservationRefused"
    assert "did not keep" in answer.body["reason"]


def test_a_snapshot_after_returns_worked_out_on_their_lines_alone_goes_to_a_person():
    entry, _ = ledger.reserve(None, "RMA-1", lines_command({"L1": 1}, MUGS))
    _, answer = ledger.reserve(entry, "RMA-2", command({"L2": 1}))
    assert answer.name == "RefundReservationRefused"
    assert "snapshot came after" in answer.body["reason"]


# ------------------------------------------------------------------ property


def order_record(order: Order) -> dict:
    return {
        "currency": order.currency,
        "lines": [
            {
                "line_id": line.line_id,
                "sku": line.sku,
                "unit_price_minor": line.unit_price_minor,
                "quantity": line.quantity,
                "tax_minor": line.tax_minor,
            }
            for line in order.lines
        ],
        "discount_minor": order.discount_minor,
        "shipping_fee_minor": order.shipping_fee_minor,
        "tax_basis": str(order.tax_basis),
        "tax_rate_bp": order.tax_rate_bp,
    }


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_returns_and_releases_in_any_order_end_with_exactly_what_was_paid(data):
    """Seller-liable returns take random units, some are released again (out of order);
    once every unit is held by a live return, the live returns hold exactly what was paid,
    and at no point more."""
    order = data.draw(orders())
    record = order_record(order)
    free = {line.line_id: line.quantity for line in order.lines}
    entry = None
    live: dict[str, dict[str, int]] = {}
    releases_left = data.draw(st.integers(0, 4))
    number = 0
    while any(free.values()):
        if live and releases_left and data.draw(st.booleans()):
            victim = data.draw(st.sampled_from(sorted(live)))
            entry, _ = ledger.release(entry, victim, {"order_ref": "ORD-P", "reason": "undone"})
            for line_id, units in live.pop(victim).items():
                free[line_id] += units
            releases_left -= 1
        else:
            open_lines = [line_id for line_id, units in free.items() if units]
            chosen = data.draw(st.lists(st.sampled_from(open_lines), min_size=1, unique=True))
            step = {line_id: data.draw(st.integers(1, free[line_id])) for line_id in chosen}
            number += 1
            cmd = {
                "order_ref": "ORD-P",
                "order": record,
                "returning": [{"line_id": k, "units": v} for k, v in step.items()],
                "liable": data.draw(st.sampled_from(["SELLER", "PLATFORM", "CARRIER"])),
                "fees": NO_FEES,
            }
            entry, answer = ledger.reserve(entry, f"RMA-{number}", cmd)
            assert answer.name == "RefundReserved", answer.body
            live[f"RMA-{number}"] = step
            for line_id, units in step.items():
                free[line_id] -= units
        held = ledger.summary(entry)["reserved_minor"]
        assert 0 <= held <= order.paid_minor
    assert ledger.summary(entry)["reserved_minor"] == order.paid_minor
