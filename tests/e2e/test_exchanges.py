"""Exchanges only to a variant of the returned product, on the real processes (the
marketplace double's catalog over HTTP, the PSP double, settlement in PostgreSQL): the same
price places a replacement and moves no money; out of stock refunds per policy; a cheaper
variant refunds the difference; another product, or a dearer variant the buyer did not
agree to pay for, is refused at the door; a dearer one the buyer pays for is charged once,
booked by settlement as owed to the seller, then ordered."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from services.tools.local_stack.stack import LocalStack
from tests.e2e.scenario import (
    TERMINAL,
    create_return,
    post_return,
    post_scan_when_ready,
    return_body,
    scan,
    wait_for_status,
)
from tests.e2e.test_disputes import wait_for_steps

UNIT = 2599  # the line's price (EUR)


def tee(http: httpx.Client, stack: LocalStack) -> str:
    """A product of its own in the catalog: the size M bought, S cheaper, XL dearer."""
    base = f"TEE-{uuid.uuid4().hex[:8]}"
    products = {f"P-{base}": {f"{base}-M": UNIT, f"{base}-S": UNIT - 600, f"{base}-XL": UNIT + 700}}
    added = http.post(f"{stack.url('marketplace')}/admin/catalog", json={"products": products})
    assert added.status_code == 200, added.text
    return base


def exchange_body(sku: str, **changes: Any) -> dict[str, Any]:
    """Two units of one line, exchanged."""
    line = {**return_body()["lines"][0], "sku": sku, "quantity": 2, "quantity_bought": 2}
    return {"lines": [line], "resolution": "EXCHANGE", **changes}


def through_inspection(http, stack, sku: str, **changes: Any) -> str:
    return_id = create_return(http, stack, **exchange_body(sku, **changes))
    body, headers = scan(return_id)
    body["items"] = [{**item, "sku": sku} for item in body["items"][:2]]
    assert post_scan_when_ready(http, stack, body, headers, timeout=60).status_code == 202
    return return_id


def at_partner(http, stack, path: str, return_id: str, key: str) -> list[dict[str, Any]]:
    answer = http.get(f"{stack.url('psp')}/{path}", params={"return_id": return_id})
    return answer.json()[key]


def replacements(http, stack, return_id: str) -> list[tuple[str, int, str]]:
    orders = http.get(
        f"{stack.url('marketplace')}/replacement-orders", params={"return_id": return_id}
    ).json()["replacement_orders"]
    return [(o["sku"], o["quantity"], o["status"]) for o in orders]


def test_a_variant_at_the_same_price_places_a_replacement_and_moves_no_money(stack, http):
    return_id = through_inspection(http, stack, "SKU-E2E-1", exchange_sku="SKU-E2E-1-XL")
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
    assert view["status"] == "COMPLETED", view["outcome"]
    assert view["outcome"]["resolution"] == "EXCHANGE"
    assert replacements(http, stack, return_id) == [("SKU-E2E-1-XL", 2, "placed")]
    assert at_partner(http, stack, "refunds", return_id, "refunds") == []


def test_an_exchange_out_of_stock_in_de_is_refunded_as_store_credit(stack, http):
    sku = "SKU-E2E-1-L"
    assert http.post(f"{stack.url('marketplace')}/admin/stock", json={sku: 0}).status_code == 200
    return_id = through_inspection(http, stack, "SKU-E2E-1", exchange_sku=sku)
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
    assert view["status"] == "COMPLETED", view["outcome"]
    [refund] = at_partner(http, stack, "refunds", return_id, "refunds")
    # WRONG_SIZE in DE: the buyer pays the 4.95 EUR return shipping
    assert (refund["method"], refund["amount_minor"]) == ("STORE_CREDIT", 2 * UNIT - 495)
    assert "exchange_out_of_stock" in [r["rule_id"] for r in view["rules_fired"]]


def test_a_cheaper_variant_refunds_the_difference_and_settles_it_from_the_seller(stack, http):
    base = tee(http, stack)
    return_id = through_inspection(http, stack, f"{base}-M", exchange_sku=f"{base}-S")
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
    assert view["status"] == "COMPLETED", view["outcome"]
    assert replacements(http, stack, return_id) == [(f"{base}-S", 2, "placed")]
    [refund] = at_partner(http, stack, "refunds", return_id, "refunds")
    assert refund["amount_minor"] == 2 * 600
    steps = wait_for_steps(stack, return_id, {"liability", f"refund:{return_id}-refund-1"})
    assert len(steps) == len(set(steps))


def test_another_product_or_a_dearer_variant_not_agreed_to_is_refused_at_the_door(stack, http):
    base = tee(http, stack)
    for sku, problem in (
        ("SKU-E2E-2-M", "not a variant of the returned product"),
        (f"{base}-XL", "set pay_difference"),
    ):
        body = return_body(**exchange_body(f"{base}-M", exchange_sku=sku))
        refused = post_return(http, stack, body, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert refused.status_code == 422, refused.text
        [field] = refused.json()["fields"]
        assert field["field"] == "exchange_sku" and problem in field["problem"], field


def test_a_dearer_variant_the_buyer_pays_for_is_charged_once_booked_then_ordered(stack, http):
    base = tee(http, stack)
    return_id = through_inspection(
        http, stack, f"{base}-M", exchange_sku=f"{base}-XL", pay_difference=True
    )
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
    assert view["status"] == "COMPLETED", view["outcome"]
    [charge] = at_partner(http, stack, "charges", return_id, "charges")
    assert (charge["amount_minor"], charge["status"]) == (2 * 700, "captured")
    assert charge["idempotency_key"] == f"{return_id}-exchange-charge"
    assert view["request"]["exchange_charge"]["provider_charge_id"] == charge["charge_id"]
    assert replacements(http, stack, return_id) == [(f"{base}-XL", 2, "placed")]
    assert at_partner(http, stack, "refunds", return_id, "refunds") == []
    wait_for_steps(stack, return_id, {f"charge:{return_id}-exchange-charge"})
