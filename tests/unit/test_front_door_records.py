"""The engine encodes what a handler publishes without fastavro's validate(): the records are
typed by construction. This is where that is proven for the front door, whose records are
built from a buyer's body: whatever body is accepted, its record passes the schema check and
decodes to what was published."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.decisions.money import MAX_ORDER_AMOUNT_MINOR
from services.eventing.avro_codec import AvroCodec
from services.eventing.envelope import check_envelope
from services.eventing.handler_contract import HttpRequest
from services.eventing.request_fields import ApiError
from services.eventing.schema_catalogue import SchemaCatalogue
from services.returns import handlers
from services.returns.handlers import ReturnsPorts
from tests.support.buyer_signin import authenticate, bearer
from tests.support.fake_orders import FakeOrders
from tests.support.fake_partners import Published
from tests.support.policies import deployed_rules
from tests.support.return_events import return_request_body

CODEC = AvroCodec(SchemaCatalogue.load())
NOW = 1_790_000_000_000  # 2026-09-21

TEXT = st.text(min_size=0, max_size=80)
LINE = st.fixed_dictionaries(
    {
        "sku": st.text(min_size=1, max_size=64),
        "quantity": st.integers(1, 5),
        "quantity_bought": st.integers(5, 9),
        "unit_price": st.fixed_dictionaries(
            {
                "amount_minor": st.integers(0, MAX_ORDER_AMOUNT_MINOR),
                "currency": st.just("EUR"),
            }
        ),
    },
    optional={"order_line_id": st.text(min_size=0, max_size=64)},
)
BODY_CHANGES = st.fixed_dictionaries(
    {},
    optional={
        "lines": st.lists(LINE, min_size=1, max_size=6),
        "buyer_notes": TEXT,
        "photo_refs": st.lists(st.text(min_size=1, max_size=40), max_size=4),
        "reason_code": st.sampled_from(["CHANGED_MIND", "DEFECTIVE", "WRONG_SIZE", "NOT_AS_SHOWN"]),
        "payment_method": st.sampled_from(["CARD", "EWALLET", "BANK_TRANSFER", "STORE_CREDIT"]),
        "category": st.sampled_from(["apparel", "electronics", "perishables", "toys"]),
        "pickup_address": TEXT,
        "delivered_at": st.sampled_from(["2026-09-10", "2026-01-01", "2026-09-20T10:00:00Z"]),
        "order_ref": st.text(min_size=1, max_size=64),
    },
)


def posted(changes: dict[str, Any], key: str | None) -> list[tuple[str, dict[str, Any]]]:
    published = Published()
    orders = FakeOrders()
    ports = ReturnsPorts(
        {}, deployed_rules(), published, lambda: NOW, orders, authenticate, lambda: "RMA-PROPERTY-1"
    )
    described = return_request_body(**changes)
    orders.place_described(described)  # the marketplace's order of the body
    body = json.dumps(described).encode()
    headers = {"Idempotency-Key": key} if key else {}
    buyer = described.get("buyer_id") if isinstance(described, dict) else None
    headers |= bearer(buyer if isinstance(buyer, str) and buyer else "B-1", NOW)
    try:
        asyncio.run(handlers.create_return(ports, HttpRequest(body, headers)))
    except ApiError as refused:
        assert 400 <= refused.status < 500
    return [(name, record) for name, record, *_ in published.records]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=BODY_CHANGES, key=st.one_of(st.none(), st.text(min_size=1, max_size=40)))
def test_every_record_an_accepted_body_leads_to_passes_the_schema_check(changes, key):
    for name, record in posted(changes, key):
        check_envelope(name, record)
        checked = CODEC.encode(name, record, checked=True)
        assert CODEC.encode(name, record, checked=False) == checked
        assert CODEC.decode(checked).record["envelope"] == record["envelope"]
