"""Several returns of one order, on the real processes: the order refund ledger (in the refund
service, keyed by order_ref) works each out after the others, so two partial returns in
flight together refund exactly what the order cost, and a third return of units already
refunded goes to a person instead of being paid again. Each order is placed once with the
marketplace (the same buyer and address on every return of it)."""

from __future__ import annotations

import uuid

from tests.e2e.scenario import create_return, post_scan_when_ready, scan, wait_for_status

TERMINAL = {"COMPLETED", "REJECTED", "CANCELLED", "COMPENSATED", "NEEDS_ATTENTION"}
ORDER = {
    "currency": "EUR",
    "lines": [
        {"line_id": "L1", "sku": "SKU-E2E-1", "unit_price_minor": 2599, "quantity": 3},
        {"line_id": "L2", "sku": "SKU-E2E-2", "unit_price_minor": 1000, "quantity": 3},
    ],
    "discount_minor": 777,
    "shipping_fee_minor": 499,
}
PAID = 3 * 2599 + 3 * 1000 - 777 + 499


def lines(l1: int, l2: int) -> list[dict]:
    chosen = []
    for line_id, sku, price, units in (
        ("L1", "SKU-E2E-1", 2599, l1),
        ("L2", "SKU-E2E-2", 1000, l2),
    ):
        if units:
            chosen.append(
                {
                    "order_line_id": line_id,
                    "sku": sku,
                    "quantity": units,
                    "quantity_bought": 3,
                    "unit_price": {"amount_minor": price, "currency": "EUR"},
                }
            )
    return chosen


def bought_by(order_ref: str) -> dict[str, str]:
    """The order's buyer and address: the same on every return of it."""
    return {
        "order_ref": order_ref,
        "buyer_id": f"B-{order_ref}",
        "pickup_address": f"Musterstrasse 1, {order_ref}, Berlin",
    }


def seller_fault_return(http, stack, order_ref: str, l1: int, l2: int) -> str:
    """DEFECTIVE, and the scan's worst grade is B: the seller is liable, no fees."""
    return create_return(
        http,
        stack,
        **bought_by(order_ref),
        reason_code="DEFECTIVE",
        order=ORDER,
        lines=lines(l1, l2),
    )


def inspect(http, stack, return_id: str) -> None:
    body, headers = scan(return_id)
    assert post_scan_when_ready(http, stack, body, headers, timeout=60).status_code == 202


def paid_at_psp(http, stack, return_id: str) -> list[int]:
    answer = http.get(f"{stack.url('psp')}/refunds", params={"return_id": return_id}).json()
    return [r["amount_minor"] for r in answer["refunds"] if r["status"] in ("succeeded", "pending")]


def test_partial_returns_in_flight_together_refund_exactly_what_the_order_cost(stack, http):
    order_ref = f"ORD-SPLIT-{uuid.uuid4().hex[:8]}"
    first = seller_fault_return(http, stack, order_ref, l1=2, l2=1)
    second = seller_fault_return(http, stack, order_ref, l1=1, l2=2)
    inspect(http, stack, first)
    inspect(http, stack, second)
    views = [wait_for_status(http, stack, rid, TERMINAL, timeout=90) for rid in (first, second)]
    assert [v["status"] for v in views] == ["COMPLETED", "COMPLETED"], [v["outcome"] for v in views]
    paid = [paid_at_psp(http, stack, rid) for rid in (first, second)]
    assert [len(p) for p in paid] == [1, 1]
    assert paid[0][0] + paid[1][0] == PAID  # not one cent lost or created across the returns
    later = max(views, key=lambda v: len(v["refund"]["other_returns"]))
    assert later["refund"]["order_reserved_minor"] == PAID
    assert "order_refund_ledger" in [rule["rule_id"] for rule in later["rules_fired"]]

    ledger = http.get(f"{stack.url('refund')}/orders/{order_ref}/refunds").json()
    assert sorted(r["return_id"] for r in ledger["live_returns"]) == sorted([first, second])
    assert (ledger["reserved_minor"], ledger["order_paid_minor"]) == (PAID, PAID)

    # the buyer tries to return a unit already refunded: a person decides, nothing is paid
    third = seller_fault_return(http, stack, order_ref, l1=0, l2=1)
    inspect(http, stack, third)
    view = wait_for_status(http, stack, third, TERMINAL, timeout=90)
    assert view["status"] == "NEEDS_ATTENTION", view["outcome"]
    assert "returning 1 after 3 of 3 bought" in view["outcome"]["reason"]
    assert view["outcome"]["ticket_id"]
    assert paid_at_psp(http, stack, third) == []


def test_the_same_units_returned_twice_are_paid_once(stack, http):
    """An order of one line (3 bought, no discount or shipping), 2 units returned twice."""
    order_ref = f"ORD-BARE-{uuid.uuid4().hex[:8]}"
    returns = [
        create_return(
            http, stack, **bought_by(order_ref), reason_code="DEFECTIVE", lines=lines(2, 0)
        )
        for _ in range(2)
    ]
    for return_id in returns:
        inspect(http, stack, return_id)
    views = [wait_for_status(http, stack, rid, TERMINAL, timeout=90) for rid in returns]
    assert sorted(v["status"] for v in views) == ["COMPLETED", "NEEDS_ATTENTION"]
    refused = next(v for v in views if v["status"] == "NEEDS_ATTENTION")
    assert "returning 2 after 2 of 3 bought" in refused["outcome"]["reason"]
    paid = sorted(len(paid_at_psp(http, stack, rid)) for rid in returns)
    assert paid == [0, 1]
    completed = next(v for v in views if v["status"] == "COMPLETED")
    assert completed["refund"]["amount"]["amount_minor"] == 2 * 2599  # its lines, no shares


def test_an_unknown_order_has_no_refund_ledger(stack, http):
    response = http.get(f"{stack.url('refund')}/orders/ORD-NEVER-SEEN/refunds")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
