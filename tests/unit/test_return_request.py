"""A buyer's return request: parsing, normalisation, 422s naming the exact field, fingerprint,
Idempotency-Key."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.decisions.money import MAX_ORDER_AMOUNT_MINOR
from services.eventing.avro_codec import AvroCodec
from services.eventing.request_fields import ApiError
from services.returns.order_facts import order_facts, return_request
from services.returns.return_request import (
    MAX_LINES,
    PAYMENT_METHODS,
    ClaimedLine,
    OrderInput,
    OrderLineInput,
    RequestLine,
    ReturnRequest,
    check_idempotency_key,
    parse_return_claim,
)
from services.tools.local_stack.drawn_returns import (
    delivered_at_ms,
    marketplace_order,
    request_of,
)
from tests.support.return_events import envelope


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * 1000  # whole seconds: exact


def line(**overrides: Any) -> dict[str, Any]:
    raw = {
        "sku": "TS-M",
        "quantity": 1,
        "quantity_bought": 2,
        "order_line_id": "L1",
        "unit_price": {"amount_minor": 149000, "currency": "IDR"},
    }
    raw.update(overrides)
    return raw


def body(**overrides: Any) -> dict[str, Any]:
    raw = {
        "order_ref": "ORD-1",
        "buyer_id": "B-1",
        "seller_id": "S-1",
        "category": "apparel",
        "market": "ID",
        "reason_code": "WRONG_SIZE",
        "delivered_at": "2026-11-20",
        "payment_method": "EWALLET",
        "pickup_address": "Jl. Sudirman 1, Jakarta",
        "lines": [line()],
        "buyer_notes": "",
        "photo_refs": [],
    }
    raw.update(overrides)
    return raw


def without(key: str) -> dict[str, Any]:
    raw = body()
    del raw[key]
    return raw


def against_the_order(raw: dict[str, Any], of: dict[str, Any] | None = None) -> ReturnRequest:
    """`raw` as the front door reads it against the order a full body describes."""
    full = of or body()
    record = {**marketplace_order(full), "delivered_at": delivered_at_ms(full)}
    return return_request(parse_return_claim(raw), order_facts(record))


def refused(raw: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as info:
        request_of(raw)
    assert info.value.status == 422
    assert info.value.code == "invalid_request"
    return info.value


def fields_of(raw: dict[str, Any]) -> list[str]:
    return [problem.field for problem in refused(raw).fields]


# ------------------------------------------------------------------ a valid request


def test_valid_body_parses_into_a_return_request_with_the_orders_facts() -> None:
    assert request_of(body()) == ReturnRequest(
        order_ref="ORD-1",
        buyer_id="B-1",
        seller_id="S-1",
        category="apparel",
        market="ID",
        reason_code="WRONG_SIZE",
        delivered_at_ms=ms(2026, 11, 20),
        payment_method="EWALLET",
        lines=(RequestLine("TS-M", 1, 2, 149000, "IDR", "L1"),),
        pickup_address="Jl. Sudirman 1, Jakarta",
        buyer_notes="",
        photo_refs=(),
        order=OrderInput("IDR", (OrderLineInput("L1", "TS-M", 149000, 2),)),
    )


def test_a_body_of_the_buyers_choices_only_is_a_claim_the_order_completes() -> None:
    """The order's ref, the lines and how many, the reason: every fact is the order's."""
    chosen = {
        "order_ref": "ORD-1",
        "reason_code": "wrong_size",
        "lines": [{"order_line_id": "L1", "quantity": 1}],
    }
    claim = parse_return_claim(chosen)
    assert (claim.buyer_id, claim.seller_id, claim.market, claim.category) == (None,) * 4
    assert (claim.delivered_at_ms, claim.payment_method, claim.pickup_address) == (None,) * 3
    assert claim.lines == (ClaimedLine(1, "L1"),)
    full = body()
    record = {**marketplace_order(full), "delivered_at": ms(2026, 11, 20)}
    assert return_request(claim, order_facts(record)) == request_of(full)


def test_category_is_lowercased() -> None:
    assert request_of(body(category="Home_Appliances")).category == "home_appliances"


def test_market_is_uppercased() -> None:
    assert request_of(body(market="id")).market == "ID"


def test_reason_code_is_uppercased() -> None:
    assert request_of(body(reason_code="wrong_size")).reason_code == "WRONG_SIZE"


@pytest.mark.parametrize(
    "key",
    [
        "buyer_id",
        "seller_id",
        "category",
        "market",
        "delivered_at",
        "payment_method",
        "pickup_address",
    ],
)
def test_a_fact_left_out_is_the_orders(key: str) -> None:
    assert against_the_order(without(key)) == request_of(body())


def test_buyer_notes_are_optional() -> None:
    assert request_of(without("buyer_notes")).buyer_notes == ""


def test_photo_refs_are_optional() -> None:
    assert request_of(without("photo_refs")).photo_refs == ()


def test_photo_refs_are_kept_in_order() -> None:
    request = request_of(body(photo_refs=["s3://b/2.jpg", "s3://b/1.jpg"]))
    assert request.photo_refs == ("s3://b/2.jpg", "s3://b/1.jpg")


def test_a_line_named_by_its_sku_is_the_order_line_of_that_sku() -> None:
    raw_missing = line()
    del raw_missing["order_line_id"]
    assert parse_return_claim(body(lines=[raw_missing])).lines[0].order_line_id is None
    empty = line(order_line_id="")
    assert parse_return_claim(body(lines=[empty])).lines[0].order_line_id is None
    order_lines = [{"line_id": "L7", "sku": "TS-M", "unit_price_minor": 149000, "quantity": 2}]
    named_by_sku = body(lines=[raw_missing], order={"currency": "IDR", "lines": order_lines})
    assert request_of(named_by_sku).lines[0].order_line_id == "L7"


def test_currency_of_the_request_is_that_of_its_lines() -> None:
    assert request_of(body()).currency == "IDR"


def test_zero_unit_price_is_accepted() -> None:
    raw = line(unit_price={"amount_minor": 0, "currency": "EUR"})
    assert request_of(body(lines=[raw])).lines[0].unit_price_minor == 0


def test_largest_unit_price_is_accepted() -> None:
    raw = line(unit_price={"amount_minor": MAX_ORDER_AMOUNT_MINOR, "currency": "EUR"})
    assert request_of(body(lines=[raw])).lines[0].unit_price_minor == (MAX_ORDER_AMOUNT_MINOR)


def test_returning_everything_that_was_bought_is_accepted() -> None:
    request = request_of(body(lines=[line(quantity=2, quantity_bought=2)]))
    assert request.lines[0].quantity == 2


def test_fifty_lines_are_accepted() -> None:
    lines = [line(order_line_id=f"L{i}") for i in range(MAX_LINES)]
    assert len(request_of(body(lines=lines)).lines) == MAX_LINES


def test_the_same_sku_on_two_order_lines_is_accepted() -> None:
    lines = [line(order_line_id="L1"), line(order_line_id="L2")]
    assert len(request_of(body(lines=lines)).lines) == 2


@pytest.mark.parametrize("method", sorted(PAYMENT_METHODS))
def test_every_payment_method_is_accepted(method: str) -> None:
    assert request_of(body(payment_method=method)).payment_method == method


# ------------------------------------------------------------------ delivered_at


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-20", ms(2026, 11, 20)),
        ("2026-11-20T10:30:00Z", ms(2026, 11, 20, 10, 30)),
        ("2026-11-20T10:30:00+00:00", ms(2026, 11, 20, 10, 30)),
        ("2026-11-20T10:30:00+07:00", ms(2026, 11, 20, 3, 30)),
        ("2026-11-20T10:30:00-05:00", ms(2026, 11, 20, 15, 30)),
        ("2026-11-20T10:30:00", ms(2026, 11, 20, 10, 30)),
        ("2026-11-20T10:30:00.250Z", ms(2026, 11, 20, 10, 30) + 250),
        ("2026-11-21T00:30:00+01:00", ms(2026, 11, 20, 23, 30)),
    ],
    ids=["date", "Z", "+00:00", "+07:00", "-05:00", "naive", "millis", "offset-crosses-day"],
)
def test_delivered_at_becomes_epoch_milliseconds_utc(raw: str, expected: int) -> None:
    assert request_of(body(delivered_at=raw)).delivered_at_ms == expected


def test_a_date_means_midnight_utc() -> None:
    assert request_of(body(delivered_at="1970-01-02")).delivered_at_ms == 86_400_000


@pytest.mark.parametrize(
    "raw",
    ["2004-03-15T07:55:47.472Z", "2038-03-12T06:55:03.930Z", "2039-06-12T03:43:29.398Z"],
)
def test_millisecond_date_times_convert_exactly(raw: str) -> None:
    moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    exact = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert request_of(body(delivered_at=raw)).delivered_at_ms == exact


@pytest.mark.parametrize(
    "raw",
    [
        "2026-13-01",
        "2026-02-30",
        "yesterday",
        "20.11.2026",
        "2026-11-20T25:00:00Z",
        "2026-11-20T10:30:00+25:00",
        "",
        20261120,
        1_790_000_000_000,
        True,
        ["2026-11-20"],
    ],
)
def test_bad_delivered_at_is_refused(raw: Any) -> None:
    assert fields_of(body(delivered_at=raw)) == ["delivered_at"]


def test_a_delivered_at_of_another_day_than_the_orders_is_refused() -> None:
    claim = parse_return_claim(body(delivered_at="2026-11-21"))
    record = {**marketplace_order(body()), "delivered_at": ms(2026, 11, 20, 15)}
    with pytest.raises(ApiError) as info:
        return_request(claim, order_facts(record))
    assert [f.field for f in info.value.fields] == ["delivered_at"]
    same_day = parse_return_claim(body(delivered_at="2026-11-20"))
    assert return_request(same_day, order_facts(record)).delivered_at_ms == ms(2026, 11, 20, 15)


# ------------------------------------------------------------------ top-level field problems


@pytest.mark.parametrize(
    "key",
    ["order_ref", "reason_code", "lines"],
)
def test_missing_required_field_is_named(key: str) -> None:
    assert fields_of(without(key)) == [key]


@pytest.mark.parametrize("key", ["order_ref", "reason_code"])
@pytest.mark.parametrize("value", [None, "", "   ", 7, 1.5, True, ["x"], {"x": 1}])
def test_required_text_field_must_be_a_non_empty_string(key: str, value: Any) -> None:
    assert fields_of(body(**{key: value})) == [key]


@pytest.mark.parametrize("key", ["buyer_id", "seller_id", "category", "pickup_address"])
@pytest.mark.parametrize("value", ["", "   ", 7, 1.5, True, ["x"], {"x": 1}])
def test_a_stated_text_fact_must_be_a_non_empty_string(key: str, value: Any) -> None:
    assert fields_of(body(**{key: value})) == [key]


@pytest.mark.parametrize(
    ("key", "limit"),
    [
        ("order_ref", 64),
        ("buyer_id", 64),
        ("seller_id", 64),
        ("category", 64),
        ("reason_code", 64),
        ("market", 8),
        ("pickup_address", 500),
        ("buyer_notes", 2000),
    ],
)
def test_text_field_over_its_length_limit_is_refused(key: str, limit: int) -> None:
    assert request_of(body(**{key: "X" * limit}))
    assert fields_of(body(**{key: "X" * (limit + 1)})) == [key]


@pytest.mark.parametrize("key", ["market", "buyer_notes"])
@pytest.mark.parametrize("value", [7, True, ["x"]])
def test_optional_text_field_must_be_a_string(key: str, value: Any) -> None:
    assert fields_of(body(**{key: value})) == [key]


@pytest.mark.parametrize("method", ["PAYPAL", "card", "", 1, "CARD "])
def test_bad_payment_method_is_refused(method: Any) -> None:
    assert fields_of(body(payment_method=method)) == ["payment_method"]


@pytest.mark.parametrize(
    "refs",
    ["s3://b/1.jpg", [1], [""], ["x" * 257], [None], {"a": "b"}, None],
    ids=["string", "int", "empty", "too-long", "null-item", "object", "null"],
)
def test_bad_photo_refs_are_refused(refs: Any) -> None:
    assert fields_of(body(photo_refs=refs)) == ["photo_refs"]


def test_more_than_twenty_photo_refs_are_refused() -> None:
    assert request_of(body(photo_refs=[f"r{i}" for i in range(20)]))
    assert fields_of(body(photo_refs=[f"r{i}" for i in range(21)])) == ["photo_refs"]


@pytest.mark.parametrize("lines", [[], None, "TS-M", {"sku": "TS-M"}, 3])
def test_lines_must_be_a_non_empty_list(lines: Any) -> None:
    assert fields_of(body(lines=lines)) == ["lines"]


@pytest.mark.parametrize("item", ["TS-M", 1, None, ["TS-M"]])
def test_lines_must_be_json_objects(item: Any) -> None:
    assert fields_of(body(lines=[line(), item])) == ["lines"]


def test_too_many_lines_are_refused() -> None:
    lines = [line(order_line_id=f"L{i}") for i in range(MAX_LINES + 1)]
    assert fields_of(body(lines=lines)) == ["lines"]


# ------------------------------------------------------------------ line problems


def test_a_line_needs_its_quantity_and_its_order_line_id_or_sku() -> None:
    without_quantity = line()
    del without_quantity["quantity"]
    assert fields_of(body(lines=[line(order_line_id="L0"), without_quantity])) == [
        "lines[1].quantity"
    ]
    unnamed = line(order_line_id=None)
    del unnamed["sku"]
    assert fields_of(body(lines=[line(order_line_id="L0"), unnamed])) == ["lines[1].sku"]


@pytest.mark.parametrize("key", ["quantity_bought", "unit_price"])
def test_a_lines_bought_quantity_and_price_are_the_orders(key: str) -> None:
    stated = body()
    del stated["lines"][0][key]
    assert against_the_order(stated) == request_of(body())


@pytest.mark.parametrize("key", ["amount_minor", "currency"])
def test_missing_unit_price_field_is_named_with_its_path(key: str) -> None:
    price = {"amount_minor": 100, "currency": "EUR"}
    del price[key]
    assert fields_of(body(lines=[line(unit_price=price)])) == [f"lines[0].unit_price.{key}"]


@pytest.mark.parametrize("key", ["quantity", "quantity_bought"])
@pytest.mark.parametrize(
    "value", [1.5, True, False, "1", [1]], ids=["1.5", "true", "false", "str", "list"]
)
def test_line_quantity_must_be_an_integer(key: str, value: Any) -> None:
    assert fields_of(body(lines=[line(**{key: value})])) == [f"lines[0].{key}"]


@pytest.mark.parametrize("key", ["quantity", "quantity_bought"])
@pytest.mark.parametrize("value", [0, -1, 10_001])
def test_line_quantity_must_be_between_one_and_ten_thousand(key: str, value: int) -> None:
    raw = line(**{key: value})
    if key == "quantity_bought":
        raw["quantity"] = 1
    assert f"lines[0].{key}" in fields_of(body(lines=[raw]))


@pytest.mark.parametrize(
    "amount",
    [99.5, True, False, "100", None, [100]],
    ids=["99.5", "true", "false", "str", "null", "list"],
)
def test_unit_price_amount_must_be_an_integer(amount: Any) -> None:
    raw = line(unit_price={"amount_minor": amount, "currency": "EUR"})
    assert fields_of(body(lines=[raw])) == ["lines[0].unit_price.amount_minor"]


def test_whole_numbers_written_with_a_fraction_are_those_integers() -> None:
    """JSON Schema's integers, as the document says: 100.0 is 100 (and 1.0 is 1)."""
    written = body(
        lines=[line(quantity=1.0, unit_price={"amount_minor": 100.0, "currency": "EUR"})]
    )
    plain = body(lines=[line(quantity=1, unit_price={"amount_minor": 100, "currency": "EUR"})])
    assert parse_return_claim(written) == parse_return_claim(plain)


def test_negative_unit_price_is_refused() -> None:
    raw = line(unit_price={"amount_minor": -1, "currency": "EUR"})
    assert fields_of(body(lines=[raw])) == ["lines[0].unit_price.amount_minor"]


def test_unit_price_above_the_maximum_is_refused() -> None:
    raw = line(unit_price={"amount_minor": MAX_ORDER_AMOUNT_MINOR + 1, "currency": "EUR"})
    assert fields_of(body(lines=[raw])) == ["lines[0].unit_price.amount_minor"]


@pytest.mark.parametrize("price", ["149000 IDR", 149000, [149000, "IDR"]])
def test_unit_price_must_be_an_object(price: Any) -> None:
    assert fields_of(body(lines=[line(unit_price=price)])) == ["lines[0].unit_price"]


@pytest.mark.parametrize("currency", ["XXX", "eur", "EURO", "", 978, None])
def test_unknown_currency_is_refused(currency: Any) -> None:
    raw = line(unit_price={"amount_minor": 100, "currency": currency})
    assert fields_of(body(lines=[raw])) == ["lines[0].unit_price.currency"]


def test_returning_more_than_was_bought_is_refused() -> None:
    error = refused(body(lines=[line(quantity=3, quantity_bought=2)]))
    assert [f.field for f in error.fields] == ["lines[0].quantity"]
    assert "3" in error.fields[0].problem
    assert "2" in error.fields[0].problem


@pytest.mark.parametrize("key", ["sku", "order_line_id"])
def test_line_text_over_64_characters_is_refused(key: str) -> None:
    assert fields_of(body(lines=[line(**{key: "X" * 65})])) == [f"lines[0].{key}"]


def test_mixed_currencies_across_lines_are_refused() -> None:
    lines = [
        line(order_line_id="L1", unit_price={"amount_minor": 100, "currency": "EUR"}),
        line(order_line_id="L2", unit_price={"amount_minor": 100, "currency": "USD"}),
    ]
    assert fields_of(body(lines=lines)) == ["lines"]


def test_the_same_order_line_twice_is_refused() -> None:
    assert fields_of(body(lines=[line(), line()])) == ["lines"]


def test_the_same_sku_twice_without_order_line_ids_is_refused() -> None:
    first, second = line(), line()
    del first["order_line_id"], second["order_line_id"]
    assert fields_of(body(lines=[first, second])) == ["lines"]


def test_nested_field_path_names_the_line_index() -> None:
    lines = [
        line(order_line_id="L0"),
        line(order_line_id="L1"),
        line(order_line_id="L2", unit_price={"amount_minor": 1.5, "currency": "IDR"}),
    ]
    assert fields_of(body(lines=lines)) == ["lines[2].unit_price.amount_minor"]


# ------------------------------------------------------------------ all problems at once


def test_every_problem_is_reported_in_one_error() -> None:
    raw = body(
        order_ref="",
        category="",
        payment_method="PAYPAL",
        delivered_at="not-a-date",
        photo_refs="x",
        lines=[
            line(order_line_id="L0", quantity=1.5),
            line(order_line_id="L1", unit_price={"amount_minor": -5, "currency": "ZZZ"}),
        ],
    )
    del raw["reason_code"]
    assert sorted(fields_of(raw)) == sorted(
        [
            "order_ref",
            "reason_code",
            "category",
            "payment_method",
            "delivered_at",
            "photo_refs",
            "lines[0].quantity",
            "lines[1].unit_price.amount_minor",
            "lines[1].unit_price.currency",
        ]
    )


def test_empty_body_names_every_required_field() -> None:
    assert sorted(fields_of({})) == sorted(["order_ref", "reason_code", "lines"])


def test_error_body_lists_each_field_with_its_problem() -> None:
    error = refused(body(order_ref="", payment_method="X"))
    answer = error.body()
    assert answer["error"] == "invalid_request"
    assert [f["field"] for f in answer["fields"]] == ["order_ref", "payment_method"]
    assert all(f["problem"] for f in answer["fields"])
    assert "order_ref" in answer["detail"]


def test_parsing_does_not_modify_the_body() -> None:
    raw = body(category="APPAREL", market="id")
    before = copy.deepcopy(raw)
    request_of(raw)
    assert raw == before


# ------------------------------------------------------------------ fingerprint


def fingerprint(raw: dict[str, Any]) -> str:
    return request_of(raw).fingerprint()


def test_fingerprint_ignores_json_key_order() -> None:
    text = json.dumps(body())
    reordered = json.dumps(dict(reversed(list(json.loads(text).items()))))
    assert reordered != text
    assert fingerprint(json.loads(text)) == fingerprint(json.loads(reordered))


def test_fingerprint_ignores_key_order_inside_lines_and_prices() -> None:
    raw = body()
    shuffled = body(
        lines=[
            {
                "unit_price": {"currency": "IDR", "amount_minor": 149000},
                "order_line_id": "L1",
                "quantity_bought": 2,
                "quantity": 1,
                "sku": "TS-M",
            }
        ]
    )
    assert fingerprint(raw) == fingerprint(shuffled)


@pytest.mark.parametrize(
    "same",
    [
        {"category": "APPAREL"},
        {"market": "id"},
        {"reason_code": "wrong_size"},
        {"delivered_at": "2026-11-20T00:00:00Z"},
        {"delivered_at": "2026-11-20T07:00:00+07:00"},
        {"delivered_at": "2026-11-20T00:00:00"},
    ],
    ids=lambda change: next(iter(change.items()))[1],
)
def test_fingerprint_is_equal_for_bodies_equal_in_meaning(same: dict[str, Any]) -> None:
    assert fingerprint(body(**same)) == fingerprint(body())


def test_fingerprint_is_equal_with_or_without_optional_defaults() -> None:
    raw = body()
    del raw["buyer_notes"], raw["photo_refs"]
    assert fingerprint(raw) == fingerprint(body(buyer_notes="", photo_refs=[]))


@pytest.mark.parametrize(
    "change",
    [
        {"order_ref": "ORD-2"},
        {"buyer_id": "B-2"},
        {"seller_id": "S-2"},
        {"category": "shoes"},
        {"market": "MY"},
        {"reason_code": "DEFECTIVE"},
        {"delivered_at": "2026-11-21"},
        {"delivered_at": "2026-11-20T00:00:00.001Z"},
        {"payment_method": "CARD"},
        {"pickup_address": "Jl. Thamrin 2, Jakarta"},
        {"buyer_notes": "too small"},
        {"photo_refs": ["s3://b/1.jpg"]},
        {"lines": [line(sku="TS-L")]},
        {"lines": [line(quantity=2)]},
        {"lines": [line(quantity_bought=3)]},
        {"lines": [line(order_line_id="L9")]},
        {"lines": [line(unit_price={"amount_minor": 149001, "currency": "IDR"})]},
        {"lines": [line(unit_price={"amount_minor": 149000, "currency": "VND"})]},
        {"lines": [line(), line(order_line_id="L2")]},
    ],
    ids=lambda change: "-".join(change),
)
def test_fingerprint_differs_when_any_field_differs(change: dict[str, Any]) -> None:
    assert fingerprint(body(**change)) != fingerprint(body())


def test_fingerprint_is_a_sha256_hex_digest() -> None:
    digest = fingerprint(body())
    assert len(digest) == 64
    assert int(digest, 16) >= 0


# ------------------------------------------------------------------ event fields


def test_event_fields_encode_as_return_requested(codec: AvroCodec) -> None:
    request = request_of(
        body(lines=[line(), line(order_line_id=None, sku="CAP")], photo_refs=["s3://b/1.jpg"])
    )
    record = {
        "envelope": envelope("ReturnRequested", "RMA-1"),
        **request.event_fields(),
        "idempotency_key": "k-1",
        "request_hash": request.fingerprint(),
    }
    decoded = codec.decode(codec.encode("ReturnRequested", record)).record
    assert decoded["lines"][1]["order_line_id"] == "L-CAP"  # the order's line of that sku
    assert decoded["lines"][0]["quantity_returned"] == 1
    assert decoded["delivered_at"] == request.delivered_at_ms


# ------------------------------------------------------------------ Idempotency-Key


def test_no_idempotency_key_is_allowed() -> None:
    assert check_idempotency_key(None) is None


@pytest.mark.parametrize("key", ["k", "a" * 128, "3f2c7a1e-uuid-like", "key with spaces", "~!"])
def test_visible_ascii_idempotency_key_up_to_128_chars_is_accepted(key: str) -> None:
    assert check_idempotency_key(key) == key


@pytest.mark.parametrize(
    "key",
    # HTTP field values are ASCII (RFC 9110); outer spaces are trimmed by proxies
    ["", "a" * 129, "line\nbreak", "tab\tkey", "nul\x00", "\x7f", "ключ", " lead", "trail "],
    ids=repr,
)
def test_bad_idempotency_key_is_a_400(key: str) -> None:
    with pytest.raises(ApiError) as info:
        check_idempotency_key(key)
    assert info.value.status == 400
    assert info.value.code == "bad_idempotency_key"


# ------------------------------------------------------------------ property


valid_lines = st.lists(
    st.fixed_dictionaries(
        {
            "quantity": st.integers(1, 10_000),
            "extra": st.integers(0, 100),
            "amount": st.integers(0, MAX_ORDER_AMOUNT_MINOR),
        }
    ),
    min_size=1,
    max_size=5,
)


@given(lines=valid_lines, currency=st.sampled_from(["EUR", "JPY", "KWD", "IDR"]))
def test_valid_lines_parse_with_integer_amounts_and_keep_their_order(
    lines: list[dict[str, int]], currency: str
) -> None:
    raw_lines = [
        line(
            order_line_id=f"L{i}",
            quantity=spec["quantity"],
            quantity_bought=min(10_000, spec["quantity"] + spec["extra"]),
            unit_price={"amount_minor": spec["amount"], "currency": currency},
        )
        for i, spec in enumerate(lines)
    ]
    request = request_of(body(lines=raw_lines))
    assert [parsed.order_line_id for parsed in request.lines] == [
        f"L{i}" for i in range(len(lines))
    ]
    for parsed, spec in zip(request.lines, lines, strict=True):
        assert type(parsed.unit_price_minor) is int
        assert parsed.unit_price_minor == spec["amount"]
        assert parsed.quantity <= parsed.quantity_bought
        assert parsed.currency == currency


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def apply(raw: dict[str, Any]) -> None:
        target: Any = raw
        for step in path[:-1]:
            target = target[step]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return apply


_DELETE = object()  # a breaker that leaves the field out
BREAKERS = {
    "order_ref": _set(("order_ref",), ""),
    "buyer_id": _set(("buyer_id",), ""),
    "seller_id": _set(("seller_id",), 5),
    "category": _set(("category",), "  "),
    "market": _set(("market",), 7),
    "reason_code": _set(("reason_code",), "X" * 65),
    "payment_method": _set(("payment_method",), "PAYPAL"),
    "delivered_at": _set(("delivered_at",), "nope"),
    "pickup_address": _set(("pickup_address",), 12),
    "buyer_notes": _set(("buyer_notes",), 3),
    "photo_refs": _set(("photo_refs",), "x"),
    "lines[0].sku": _set(("lines", 0, "sku"), ""),
    "lines[0].quantity": _set(("lines", 0, "quantity"), 1.5),
    "lines[0].quantity_bought": _set(("lines", 0, "quantity_bought"), True),
    "lines[0].unit_price.amount_minor": _set(("lines", 0, "unit_price", "amount_minor"), -1),
    "lines[0].unit_price.currency": _set(("lines", 0, "unit_price", "currency"), "ZZZ"),
    "lines[1].quantity": _set(("lines", 1, "quantity"), 0),
    "lines[1].unit_price": _set(("lines", 1, "unit_price"), "free"),
}


@given(broken=st.sets(st.sampled_from(sorted(BREAKERS)), min_size=1))
def test_every_broken_field_is_named_and_only_those(broken: set[str]) -> None:
    raw = body(lines=[line(order_line_id="L0"), line(order_line_id="L1")])
    for path in broken:
        BREAKERS[path](raw)
    assert sorted(fields_of(raw)) == sorted(broken)


@given(seed=st.randoms(use_true_random=False))
def test_fingerprint_ignores_any_key_order(seed: Any) -> None:
    def shuffled(value: Any) -> Any:
        if isinstance(value, dict):
            items = list(value.items())
            seed.shuffle(items)
            return {key: shuffled(inner) for key, inner in items}
        if isinstance(value, list):
            return [shuffled(inner) for inner in value]
        return value

    raw = body(lines=[line(order_line_id="L0"), line(order_line_id="L1", sku="CAP")])
    assert fingerprint(shuffled(raw)) == fingerprint(raw)


# ---------------------------------------------------------------- the order as paid


def order(**overrides: Any) -> dict[str, Any]:
    raw = {
        "currency": "IDR",
        "discount_minor": 20000,
        "shipping_fee_minor": 15000,
        "lines": [
            {"line_id": "L1", "sku": "TS-M", "unit_price_minor": 149000, "quantity": 2},
            {"line_id": "L2", "sku": "CAP", "unit_price_minor": 59000, "quantity": 1},
        ],
    }
    raw.update(overrides)
    return raw


def test_the_order_as_paid_travels_with_the_request() -> None:
    request = request_of(body(order=order()))
    assert request.order is not None
    assert [line.line_id for line in request.order.lines] == ["L1", "L2"]
    fields = request.event_fields()
    assert fields["order"]["discount_minor"] == 20000
    assert fields["order"]["tax_basis"] == "INCLUSIVE"
    assert fields["store_credit_chosen"] is False


def test_the_orders_figures_travel_with_every_request() -> None:
    """A body without the `order` block: the refund still shares the order's discounts,
    shipping and tax (the order's, from the marketplace)."""
    fields = request_of(body()).event_fields()
    assert fields["order"]["lines"] == [
        {"line_id": "L1", "sku": "TS-M", "unit_price_minor": 149000, "quantity": 2, "tax_minor": 0}
    ]


def test_a_returned_line_must_name_a_line_of_the_order() -> None:
    raw = body(order=order(), lines=[line(order_line_id="L9")])
    assert fields_of(raw) == ["lines[0].order_line_id"]


def test_a_returned_line_must_agree_with_the_order_line_it_names() -> None:
    raw = body(order=order(), lines=[line(quantity_bought=5)])
    assert fields_of(raw) == ["lines[0].quantity_bought"]


def test_the_order_currency_must_be_the_lines_currency() -> None:
    assert "order.currency" in fields_of(body(order=order(currency="EUR")))


def test_a_discount_above_the_goods_is_refused() -> None:
    assert fields_of(body(order=order(discount_minor=10**9))) == ["order.discount_minor"]


def test_order_line_ids_must_be_unique() -> None:
    lines = order()["lines"]
    lines[1]["line_id"] = "L1"
    assert "order.lines" in fields_of(body(order=order(lines=lines)))


def test_an_unknown_tax_basis_is_refused() -> None:
    assert fields_of(body(order=order(tax_basis="GROSS"))) == ["order.tax_basis"]


def test_store_credit_must_be_a_boolean() -> None:
    assert fields_of(body(store_credit="yes")) == ["store_credit"]
    assert request_of(body(store_credit=True)).store_credit_chosen is True
