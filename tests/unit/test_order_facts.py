"""The facts of a return come from the marketplace's order, never from the buyer's body
(`order_facts`): stated facts must agree, else 422 naming each field that does not."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.eventing.request_fields import ApiError
from services.returns.order_facts import OrderRecordError, order_facts, return_request
from services.returns.return_request import parse_return_claim
from services.tools.local_stack.drawn_returns import delivered_at_ms, marketplace_order

DELIVERED = "2026-11-20T09:30:00Z"


def full_body() -> dict[str, Any]:
    return {
        "order_ref": "ORD-7",
        "buyer_id": "B-7",
        "seller_id": "S-7",
        "category": "shoes",
        "market": "DE",
        "reason_code": "WRONG_SIZE",
        "delivered_at": DELIVERED,
        "payment_method": "CARD",
        "pickup_address": "Musterstrasse 1, Berlin",
        "lines": [
            {
                "order_line_id": "L1",
                "sku": "SHOE-42",
                "quantity": 1,
                "quantity_bought": 2,
                "unit_price": {"amount_minor": 2599, "currency": "EUR"},
            }
        ],
        "order": {
            "currency": "EUR",
            "discount_minor": 500,
            "shipping_fee_minor": 495,
            "tax_basis": "INCLUSIVE",
            "tax_rate_bp": 1900,
            "lines": [
                {"line_id": "L1", "sku": "SHOE-42", "unit_price_minor": 2599, "quantity": 2},
                {"line_id": "L2", "sku": "LACES", "unit_price_minor": 300, "quantity": 1},
            ],
        },
    }


def the_order(**changes: Any) -> dict[str, Any]:
    return {
        **marketplace_order(full_body()),
        "delivered_at": delivered_at_ms(full_body()),
    } | changes


def decided(body: dict[str, Any], order: dict[str, Any] | None = None) -> Any:
    return return_request(parse_return_claim(body), order_facts(order or the_order()))


def refused_fields(body: dict[str, Any], order: dict[str, Any] | None = None) -> list[str]:
    with pytest.raises(ApiError) as refused:
        decided(body, order)
    assert (refused.value.status, refused.value.code) == (422, "invalid_request")
    return [problem.field for problem in refused.value.fields]


CHOICES_ONLY = {
    "order_ref": "ORD-7",
    "reason_code": "WRONG_SIZE",
    "lines": [{"order_line_id": "L1", "quantity": 1}],
}
# a fact the body may state, where it sits, and a value that is not the order's
STATED = {
    "buyer_id": (("buyer_id",), "B-8"),
    "seller_id": (("seller_id",), "S-8"),
    "category": (("category",), "electronics"),
    "market": (("market",), "FR"),
    "delivered_at": (("delivered_at",), "2026-11-21T09:30:00Z"),
    "payment_method": (("payment_method",), "EWALLET"),
    "lines[0].sku": (("lines", 0, "sku"), "SHOE-43"),
    "lines[0].quantity_bought": (("lines", 0, "quantity_bought"), 3),
    "lines[0].unit_price.amount_minor": (("lines", 0, "unit_price", "amount_minor"), 2000),
    "lines[0].unit_price.currency": (("lines", 0, "unit_price", "currency"), "GBP"),
    "order.discount_minor": (("order", "discount_minor"), 0),
    "order.shipping_fee_minor": (("order", "shipping_fee_minor"), 0),
    "order.tax_rate_bp": (("order", "tax_rate_bp"), 700),
    "order.tax_basis": (("order", "tax_basis"), "EXCLUSIVE"),
    "order.lines[0].unit_price_minor": (("order", "lines", 0, "unit_price_minor"), 2000),
}


def _put(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value


def test_the_buyers_choices_alone_make_the_request_of_the_orders_facts() -> None:
    request = decided(CHOICES_ONLY)
    assert request == decided(full_body())
    assert (request.buyer_id, request.seller_id, request.market) == ("B-7", "S-7", "DE")
    assert (request.category, request.payment_method) == ("shoes", "CARD")
    assert request.delivered_at_ms == delivered_at_ms(full_body())
    assert [(line.sku, line.unit_price_minor, line.currency) for line in request.lines] == [
        ("SHOE-42", 2599, "EUR")
    ]
    assert request.order is not None and request.order.discount_minor == 500
    assert (request.order.shipping_fee_minor, request.order.tax_rate_bp) == (495, 1900)


@given(stated=st.sets(st.sampled_from(sorted(STATED))))
def test_facts_stated_as_the_order_has_them_change_nothing(stated: set[str]) -> None:
    body = copy.deepcopy(CHOICES_ONLY)
    full = full_body()
    for name in stated:
        path, _ = STATED[name]
        if path[0] == "order":  # the block as a whole
            body["order"] = copy.deepcopy(full["order"])
        elif path[0] == "lines":  # the line's own key (a price as a whole)
            body["lines"][0][path[2]] = copy.deepcopy(full["lines"][0][path[2]])
        else:
            body[path[0]] = full[path[0]]
    assert decided(body) == decided(CHOICES_ONLY)


@given(wrong=st.sets(st.sampled_from(sorted(STATED)), min_size=1))
def test_every_fact_that_differs_from_the_order_is_named_and_only_those(wrong: set[str]) -> None:
    body = full_body()
    for name in wrong:
        path, value = STATED[name]
        _put(body, path, value)
    assert sorted(refused_fields(body)) == sorted(wrong)


def test_the_problem_says_what_the_order_has() -> None:
    body = full_body()
    body["lines"][0]["unit_price"]["amount_minor"] = 2000
    with pytest.raises(ApiError) as refused:
        decided(body)
    assert refused.value.fields[0].problem == "differs from the order (2599)"


def test_another_buyers_id_is_not_shown() -> None:
    with pytest.raises(ApiError) as refused:
        decided({**CHOICES_ONLY, "buyer_id": "B-8"})
    assert "B-7" not in refused.value.detail


def test_a_date_is_compared_by_day_a_date_time_to_the_millisecond() -> None:
    assert decided({**CHOICES_ONLY, "delivered_at": "2026-11-20"})
    assert decided({**CHOICES_ONLY, "delivered_at": "2026-11-20T10:30:00+01:00"})
    assert refused_fields({**CHOICES_ONLY, "delivered_at": "2026-11-20T09:30:00.001Z"}) == [
        "delivered_at"
    ]


def test_an_order_not_delivered_has_nothing_to_return() -> None:
    assert refused_fields(CHOICES_ONLY, the_order(delivered_at=None)) == ["order_ref"]


def test_an_order_paid_with_a_method_no_refund_goes_back_to_is_refused() -> None:
    assert refused_fields(CHOICES_ONLY, the_order(paid_with="GIFT_CARD")) == ["order_ref"]


def test_a_line_the_order_lacks_is_named() -> None:
    body = {**CHOICES_ONLY, "lines": [{"order_line_id": "L9", "quantity": 1}]}
    assert refused_fields(body) == ["lines[0].order_line_id"]
    by_sku = {**CHOICES_ONLY, "lines": [{"sku": "HAT", "quantity": 1}]}
    assert refused_fields(by_sku) == ["lines[0].sku"]


def test_a_line_named_by_a_sku_two_order_lines_have_is_refused() -> None:
    order = the_order()
    order["lines"].append({**order["lines"][0], "line_id": "L3"})
    body = {**CHOICES_ONLY, "lines": [{"sku": "SHOE-42", "quantity": 1}]}
    assert refused_fields(body, order) == ["lines[0].sku"]
    assert (
        decided({**CHOICES_ONLY, "lines": [{"sku": "LACES", "quantity": 1}]}).lines[0].order_line_id
        == "L2"
    )


def test_returning_more_than_the_order_line_bought_is_refused() -> None:
    body = {**CHOICES_ONLY, "lines": [{"order_line_id": "L1", "quantity": 3}]}
    assert refused_fields(body) == ["lines[0].quantity"]


def test_one_line_twice_is_refused() -> None:
    body = {
        **CHOICES_ONLY,
        "lines": [{"order_line_id": "L1", "quantity": 1}, {"sku": "SHOE-42", "quantity": 1}],
    }
    assert refused_fields(body) == ["lines"]


def test_lines_of_two_categories_are_returned_separately() -> None:
    order = the_order()
    order["lines"][1]["category"] = "accessories"
    body = {
        **CHOICES_ONLY,
        "lines": [{"order_line_id": "L1", "quantity": 1}, {"order_line_id": "L2", "quantity": 1}],
    }
    assert refused_fields(body, order) == ["lines"]


def test_the_buyers_pickup_address_wins_over_the_orders() -> None:
    assert decided(CHOICES_ONLY).pickup_address == "Musterstrasse 1, Berlin"
    moved = decided({**CHOICES_ONLY, "pickup_address": "Hauptstrasse 2, Berlin"})
    assert moved.pickup_address == "Hauptstrasse 2, Berlin"


@pytest.mark.parametrize(
    "broken",
    [
        None,
        [],
        {"lines": []},
        {"lines": [{"line_id": "L1"}]},
        the_order(currency="XXX"),
        the_order(delivered_at="yesterday"),
        the_order(shipping_fee_minor=-1),
        the_order(tax_basis="NET"),
        the_order(buyer_id=7),
        the_order(lines=[{**the_order()["lines"][0], "serials": [1]}]),
        the_order(lines=[{**the_order()["lines"][0], "quantity": True}]),
    ],
)
def test_an_order_record_that_breaks_the_contract_is_the_order_systems_fault(broken: Any) -> None:
    with pytest.raises(OrderRecordError):
        order_facts(broken)
