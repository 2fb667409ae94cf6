"""Exchanges only to a variant of the returned product, priced by the marketplace's catalog:
the front door refuses another product or a dearer variant the buyer did not agree to pay
for; the saga refunds a cheaper variant's difference after the replacement is placed and
charges a dearer one's before ordering it (pure)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from services.decisions.saga import Status
from services.eventing.request_fields import ApiError
from services.tools.local_stack.drawn_returns import random_return, request_of
from tests.support.return_events import event, return_request_body
from tests.unit.test_saga_disputes import issued_for
from tests.unit.test_saga_refund_plan import accepted_return, apply, refund_command
from tests.unit.test_saga_refund_routes import EXCHANGED_LINES

RID = "RMA-PLAN-1"  # accepted_return's


def exchange(sku: str, price: int | None = None, pay: bool = False, rid: str = RID):
    fields: dict[str, Any] = {"lines": EXCHANGED_LINES, "exchange_sku": sku}
    state = accepted_return(return_id=rid, resolution="EXCHANGE", **fields)
    request = {**state.request, "exchange_unit_price_minor": price, "pay_difference": pay}
    return refund_command(type(state)(**{**state.__dict__, "request": request}))


def names(transition) -> list[str]:
    return [name for name, _ in transition.commands]


def test_the_front_door_takes_a_variant_of_the_returned_product_at_its_catalog_price():
    body = return_request_body(
        resolution="EXCHANGE", exchange_sku="SKU-RED-L", lines=return_request_body()["lines"][:1]
    )
    request = request_of(body)
    assert (request.exchange_sku, request.exchange_unit_price_minor) == ("SKU-RED-L", 1999)
    assert request.event_fields()["exchange_unit_price_minor"] == 1999


@pytest.mark.parametrize(
    ("sku", "lines", "problem"),
    [
        ("SKU-CAP-L", 1, "not a variant of the returned product P-SKU-RED"),
        ("SKU-RED-L", 2, "an exchange is for the variants of one product"),
    ],
)
def test_the_front_door_refuses_another_product(sku, lines, problem):
    body = return_request_body(
        resolution="EXCHANGE", exchange_sku=sku, lines=return_request_body()["lines"][:lines]
    )
    with pytest.raises(ApiError) as refused:
        request_of(body)
    assert refused.value.status == 422
    [field] = refused.value.fields
    assert field.field == "exchange_sku" and problem in field.problem


def test_a_cheaper_variant_is_placed_then_its_difference_refunded_and_settled_from_the_seller():
    done = exchange("SKU-RED-S", price=1499)
    assert done.state.status == Status.EXCHANGE_PENDING
    placed = apply(done.state, "ReplacementOrderPlaced", event("ReplacementOrderPlaced", RID))
    [(name, refund)] = placed.commands
    assert name == "RefundRequested"
    assert refund["amount"] == {"amount_minor": 3 * 500, "currency": "EUR"}
    assert refund["liable"] == "SELLER"
    assert [line["amount_minor"] for line in refund["breakdown"]] == [1500]
    issued = issued_for(RID, refund)
    completed = apply(placed.state, "RefundIssued", issued)
    [(name, completion)] = completed.commands
    assert name == "ReturnCompleted" and completion["refunded"]["amount_minor"] == 1500
    assert completion["breakdown"][0]["amount_minor"] == 1500


def test_a_dearer_variant_the_buyer_pays_for_is_charged_before_it_is_ordered():
    done = exchange("SKU-RED-XL", price=2499, pay=True)
    assert done.state.status == Status.EXCHANGE_CHARGING
    [(name, charge)] = done.commands
    assert name == "ChargeRequested"
    assert charge["amount"] == {"amount_minor": 1500, "currency": "EUR"}
    assert charge["idempotency_key"] == f"{RID}-exchange-charge"
    captured = event(
        "ChargeCaptured",
        RID,
        amount=charge["amount"],
        method=charge["method"],
        provider="psp-double",
        provider_charge_id="ch_1",
        idempotency_key=charge["idempotency_key"],
    )
    ordered = apply(done.state, "ChargeCaptured", captured)
    assert names(ordered) == ["ReplacementOrderRequested"]
    assert ordered.state.request["exchange_charge"]["provider_charge_id"] == "ch_1"
    placed = apply(ordered.state, "ReplacementOrderPlaced", event("ReplacementOrderPlaced", RID))
    assert placed.state.status == Status.COMPLETED
    # out of stock after the buyer paid: a person gives the charge back
    out = apply(ordered.state, "ReplacementOutOfStock", event("ReplacementOutOfStock", RID))
    assert out.state.status == Status.NEEDS_ATTENTION
    assert "TicketOpened" in names(out)


def test_a_declined_charge_calls_the_exchange_off_and_refunds_as_planned():
    done = exchange("SKU-RED-XL", price=2499, pay=True)
    declined = event(
        "ChargeFailed",
        RID,
        amount={"amount_minor": 1500, "currency": "EUR"},
        method="CARD",
        provider="psp-double",
        idempotency_key=f"{RID}-exchange-charge",
        decline_code="insufficient_funds",
        detail="",
        retryable=False,
    )
    refunded = apply(done.state, "ChargeFailed", declined)
    assert names(refunded) == ["RefundRequested"]
    assert "exchange_charge_declined" in [r["rule_id"] for r in refunded.state.rules_fired]


def test_a_dearer_variant_without_the_buyers_consent_is_refunded_instead():
    done = exchange("SKU-RED-XL", price=2499, pay=False)  # an older record: no consent
    assert names(done) == ["RefundRequested"]
    assert "exchange_refused" in [r["rule_id"] for r in done.state.rules_fired]


def test_the_drawn_exchanges_return_one_product_with_a_grade_per_unit():
    rng = random.Random(7)
    for index in range(500):
        body, grades = random_return(rng, index, "t", exchange_share=0.5)
        assert len(grades) == sum(line["quantity"] for line in body["lines"])
        if body.get("resolution") == "EXCHANGE":
            assert len(body["lines"]) == 1
            request_of(body)  # the front door takes it: a variant of the returned product
