"""The marketplace double as the order system, a real OS process on the session's broker:
an order placed once per order_ref is published as OrderPlaced (Avro, keyed by order_ref)
before the answer, delivered once as OrderDelivered; another body for the same order_ref
is a 409, a wrong field a 422 naming it, and without Kafka the answer is 503."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from services.eventing.avro_codec import AvroCodec
from services.eventing.topics import ORDERS
from tests.integration.test_partner_doubles import own_partner


def order_body(order_ref: str, **changes) -> dict:
    return {
        "order_ref": order_ref,
        "market": "DE",
        "buyer_id": "B-1",
        "seller_id": "S-UK-1",
        "currency": "EUR",
        "seller_currency": "GBP",
        "fx_rate": "0.8563",
        "shipping_fee_minor": 499,
        "pickup_address": "Musterstrasse 1, Berlin",
        "lines": [
            {
                "line_id": "L1",
                "sku": "SKU-1",
                "quantity": 2,
                "unit_price_minor": 1999,
                "commission_bps": 1500,
                "serials": ["SN-1", "SN-2"],
            }
        ],
    } | changes


def read_orders(bootstrap: str, codec: AvroCodec, order_ref: str, wanted: int) -> list:
    async def main() -> list:
        consumer = AIOKafkaConsumer(
            ORDERS.name,
            bootstrap_servers=bootstrap,
            group_id=f"it-{uuid.uuid4()}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        found = []
        try:
            async with asyncio.timeout(30):
                while len(found) < wanted:
                    for messages in (await consumer.getmany(timeout_ms=500)).values():
                        found += [
                            (m.key.decode(), codec.decode(m.value), dict(m.headers))
                            for m in messages
                            if m.key == order_ref.encode()
                        ]
            await asyncio.sleep(1)  # nothing more arrives for it
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                found += [m for m in messages if m.key == order_ref.encode()]
        finally:
            await consumer.stop()
        return found

    return asyncio.run(main())


def test_an_order_is_published_once_placed_and_once_delivered(
    catalogue_topics: str, codec: AvroCodec, tmp_path: Path
) -> None:
    settings = {"KAFKA_BOOTSTRAP_SERVERS": catalogue_topics}
    order_ref = f"ORD-{uuid.uuid4().hex[:8]}"
    with own_partner("marketplace_server", "MARKETPLACE_", settings, tmp_path) as (_, client):
        placed = client.post("/orders", json=order_body(order_ref))
        assert placed.status_code == 201, placed.text
        again = client.post("/orders", json=order_body(order_ref))
        assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
        other = client.post("/orders", json=order_body(order_ref, seller_id="S-2"))
        assert other.status_code == 409 and other.json()["error"] == "order_exists"
        delivered = client.post(f"/orders/{order_ref}/delivered")
        assert delivered.status_code == 201 and delivered.json()["delivered_at"]
        assert client.post(f"/orders/{order_ref}/delivered").status_code == 200
        assert client.get(f"/orders/{order_ref}").json()["seller_currency"] == "GBP"
        assert client.post("/orders/ORD-NONE/delivered").status_code == 404
    records = read_orders(catalogue_topics, codec, order_ref, 2)
    assert [decoded.name for _, decoded, _ in records] == ["OrderPlaced", "OrderDelivered"]
    _, placed_event, headers = records[0]
    order = placed_event.record["order"]
    assert order["seller_id"] == "S-UK-1" and order["fx_rate"] == "0.8563"
    assert order["lines"][0]["commission_bps"] == 1500
    assert order["lines"][0]["serials"] == ["SN-1", "SN-2"]
    assert placed_event.record["envelope"]["return_id"] == order_ref
    assert headers["event_type"] == b"OrderPlaced"


def test_wrong_orders_are_refused_naming_the_field_and_without_kafka_it_is_503(
    tmp_path: Path,
) -> None:
    with own_partner("marketplace_server", "MARKETPLACE_", {}, tmp_path) as (_, client):
        for changes, field in (
            ({"currency": "XXX"}, "currency"),
            ({"fx_rate": "-1"}, "fx_rate"),
            ({"fx_rate": 0.85}, "fx_rate"),
            ({"market": "Germany"}, "market"),
            ({"lines": []}, "lines"),
            ({"lines": [{"line_id": "L1", "sku": "S", "quantity": 0}]}, "quantity"),
        ):
            refused = client.post("/orders", json=order_body("ORD-BAD", **changes))
            assert refused.status_code == 422, (changes, refused.text)
            assert refused.json()["field"] == field, refused.json()
        unavailable = client.post("/orders", json=order_body("ORD-NO-KAFKA"))
        assert unavailable.status_code == 503
        assert unavailable.json()["error"] == "orders_unavailable"
        assert client.get("/orders/ORD-NO-KAFKA").status_code == 404  # nothing remembered
