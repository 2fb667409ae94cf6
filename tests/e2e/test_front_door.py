"""The front door takes a return's facts from the marketplace's order system (the double,
a real process reached over HTTP), never from the buyer's body; and knows who calls from
the marketplace's signed tokens (checked with the keys of its JWKS endpoint)."""

from __future__ import annotations

import time
import uuid

from services.tools.local_stack.drawn_returns import marketplace_order
from tests.e2e.scenario import (
    place_order,
    post_return,
    return_body,
    signed_in,
    status,
    wait_for_status,
)

ACCOUNT = {
    "holder": "Erika Mustermann",
    "number": "DE89370400440532013000",
    "bank_code": "COBADEFFXXX",
}


def test_a_body_whose_price_differs_from_the_order_is_a_422_naming_it(stack, http):
    body = return_body()
    place_order(http, stack, body)
    cheaper = return_body(order_ref=body["order_ref"], buyer_id=body["buyer_id"])
    cheaper["pickup_address"] = body["pickup_address"]
    cheaper["lines"][0]["unit_price"]["amount_minor"] = 99_999  # the order says 2599
    buyer = signed_in(http, stack, body["buyer_id"])
    answer = http.post(f"{stack.url('returns')}/returns", json=cheaper, headers=buyer)
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
    headers = {"Idempotency-Key": uuid.uuid4().hex, **signed_in(http, stack, body["buyer_id"])}
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
    never_ordered = return_body()
    buyer = signed_in(http, stack, never_ordered["buyer_id"])
    unknown = http.post(f"{stack.url('returns')}/returns", json=never_ordered, headers=buyer)
    assert unknown.status_code == 422
    assert unknown.json()["fields"] == [
        {"field": "order_ref", "problem": "the marketplace has no such order"}
    ]
    body = return_body()
    placed = http.post(f"{stack.url('marketplace')}/orders", json=marketplace_order(body))
    assert placed.status_code == 201, placed.text
    buyer = signed_in(http, stack, body["buyer_id"])
    undelivered = http.post(f"{stack.url('returns')}/returns", json=body, headers=buyer)
    assert undelivered.status_code == 422
    assert undelivered.json()["fields"][0]["field"] == "order_ref"
    delivered = post_return(http, stack, body)  # delivered now: taken
    assert delivered.status_code == 202, delivered.text


def test_another_buyers_token_is_403_and_no_token_is_401(stack, http):
    body = return_body()
    place_order(http, stack, body)
    url = f"{stack.url('returns')}/returns"
    anonymous = http.post(url, json=body)
    assert anonymous.status_code == 401, anonymous.text
    assert (anonymous.json()["error"], anonymous.headers["WWW-Authenticate"]) == (
        "missing_token",
        "Bearer",
    )
    intruder = signed_in(http, stack, f"B-intruder-{uuid.uuid4().hex[:6]}")
    refused = http.post(url, json=body, headers=intruder)
    assert (refused.status_code, refused.json()["error"]) == (403, "not_your_order")
    return_id = post_return(http, stack, body).json()["return_id"]
    cancel = http.post(f"{url}/{return_id}/cancel", json={}, headers=intruder)
    assert (cancel.status_code, cancel.json()["error"]) == (403, "not_your_return")
    account = http.post(f"{url}/{return_id}/bank-account", json=ACCOUNT, headers=intruder)
    assert (account.status_code, account.json()["error"]) == (403, "not_your_return")


def test_a_bank_account_change_without_a_fresh_sign_in_is_401(stack, http):
    body = return_body()
    return_id = post_return(http, stack, body).json()["return_id"]
    url = f"{stack.url('returns')}/returns/{return_id}/bank-account"
    six_minutes_ago = int(time.time() * 1000) - 360_000
    stale = signed_in(http, stack, body["buyer_id"], signed_in_at_ms=six_minutes_ago)
    refused = http.post(url, json=ACCOUNT, headers=stale)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"] == "fresh_sign_in_required"
    challenge = refused.headers["WWW-Authenticate"]
    assert 'error="insufficient_user_authentication"' in challenge and 'max_age="300"' in challenge
    fresh = signed_in(http, stack, body["buyer_id"])
    given = http.post(url, json=ACCOUNT, headers=fresh)
    assert given.status_code == 202, given.text


def test_a_buyer_over_their_quota_is_429_with_retry_after(stack, http):
    """The stack's quota: BUYER_REQUESTS_BURST requests at once (local_stack/stack.py)."""
    buyer_id = f"B-e2e-busy-{uuid.uuid4().hex[:6]}"
    buyer = signed_in(http, stack, buyer_id)
    url = f"{stack.url('returns')}/returns"
    answers = [
        http.post(url, json=return_body(buyer_id=buyer_id), headers=buyer) for _ in range(40)
    ]
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) == {422, 429}, statuses  # unknown orders, then over the quota
    over = answers[statuses.index(429)]
    assert over.json()["error"] == "too_many_requests"
    assert int(over.headers["Retry-After"]) >= 1
