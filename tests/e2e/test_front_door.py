"""The front door takes a return's facts from the marketplace's order system (the double,
a real process reached over HTTP), never from the buyer's body."""

from __future__ import annotations

import uuid

from services.tools.local_stack.drawn_returns import marketplace_order
from tests.e2e.scenario import (
    place_order,
    post_return,
    return_body,
    status,
    wait_for_status,
)


def test_a_body_whose_price_differs_from_the_order_is_a_422_naming_it(stack, http):
    body = return_body()
    place_order(http, stack, body)
    cheaper = return_body(order_ref=body["order_ref"], buyer_id=body["buyer_id"])
    cheaper["pickup_address"] = body["pickup_address"]
    cheaper["lines"][0]["unit_price"]["amount_minor"] = 99_999  # the order says 2599
    answer = http.post(f"{stack.url('returns')}/returns", json=cheaper)
    assert answer.status_code == 422, answer.text
    refused = answer.json()
    assert refused["error"] == "invalid_request"
    assert refused["fields"] == [
        {"field": "lines[0].unit_price.amount_minor", "problem": "differs from the order (2599)"}
    ]
    assert "return_id" not in refused  # nothing was recorded


def test_the_buyers_choices_alone_are_a_return_with_the_orders_facts(stack, http):
    body = return_body()
    place_order(http, stack, body)
    choices = {
        "order_ref": body["order_ref"],
        "reason_code": "WRONG_SIZE",
        "lines": [
            {"order_line_id": "L1", "quantity": 2},
            {"sku": "SKU-E2E-2", "quantity": 1},
        ],
    }
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    answer = http.post(f"{stack.url('returns')}/returns", json=choices, headers=headers)
    assert answer.status_code == 202, answer.text
    return_id = answer.json()["return_id"]
    wait_for_status(
        http, stack, return_id, {"PICKUP_PENDING", "PICKUP_SCHEDULED", "AWAITING_INSPECTION"}
    )
    view = status(http, stack, return_id)
    assert view is not None
    request = view["request"]
    assert (request["buyer_id"], request["seller_id"], request["market"]) == (
        body["buyer_id"],
        "S-e2e",
        "DE",
    )
    assert [(line["sku"], line["unit_price"]["amount_minor"]) for line in request["lines"]] == [
        ("SKU-E2E-1", 2599),
        ("SKU-E2E-2", 1000),
    ]


def test_an_order_the_marketplace_does_not_know_or_has_not_delivered_is_refused(stack, http):
    unknown = http.post(f"{stack.url('returns')}/returns", json=return_body())
    assert unknown.status_code == 422
    assert unknown.json()["fields"] == [
        {"field": "order_ref", "problem": "the marketplace has no such order"}
    ]
    body = return_body()
    placed = http.post(f"{stack.url('marketplace')}/orders", json=marketplace_order(body))
    assert placed.status_code == 201, placed.text
    undelivered = http.post(f"{stack.url('returns')}/returns", json=body)
    assert undelivered.status_code == 422
    assert undelivered.json()["fields"][0]["field"] == "order_ref"
    delivered = post_return(http, stack, body)  # delivered now: taken
    assert delivered.status_code == 202, delivered.text
