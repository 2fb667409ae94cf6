"""The marketplace double as the order system, a real OS process on the session's broker:
an order placed once per order_ref is published as OrderPlaced (Avro, keyed by order_ref)
before the answer, delivered once as OrderDelivered; another body for the same order_ref
is a 409, a wrong field a 422 naming it, and without Kafka the answer is 503."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from services.eventing.avro_codec import AvroCodec
from services.eventing.marketplace_keys import (
    REFETCH_S,
    BearerCheck,
    MarketplaceKeys,
    TokenKeysUnavailable,
)
from services.eventing.marketplace_tokens import TokenRefused, TokenTerms
from services.eventing.partner_http import PartnerHttp
from services.eventing.topics import ORDERS
from services.returns.marketplace_orders import CacheTerms, MarketplaceOrders
from services.returns.order_facts import OrderSystemUnavailable
from tests.integration.test_partner_doubles import own_partner, stop_process


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


def test_the_front_door_reads_orders_from_the_double_and_keeps_delivered_ones(
    catalogue_topics: str, tmp_path: Path
) -> None:
    """MarketplaceOrders over HTTP: an unknown order is None, an order not delivered is read
    again every time, a delivered one is kept (the double stopped, it is still known); the
    category, tax and back-dated delivery of the order are its facts; no double: 503."""
    settings = {"KAFKA_BOOTSTRAP_SERVERS": catalogue_topics}
    order_ref = f"ORD-{uuid.uuid4().hex[:8]}"
    body = order_body(order_ref, tax_basis="EXCLUSIVE", tax_rate_bp=1900, paid_with="CARD")
    body["lines"][0]["category"] = "Shoes"
    delivered_at = 1_790_000_000_123

    async def read(base_url: str, refs: list[str]) -> list:
        orders = MarketplaceOrders(
            PartnerHttp(base_url, 3.0, partner="marketplace"), time.monotonic
        )
        try:
            return [await orders.find(ref) for ref in refs]
        finally:
            await orders.aclose()

    with own_partner("marketplace_server", "MARKETPLACE_", settings, tmp_path) as (partner, client):
        assert client.post("/orders", json=body).status_code == 201
        unknown, placed = asyncio.run(read(partner.base_url, ["ORD-NONE", order_ref]))
        assert unknown is None
        assert placed is not None and placed.delivered_at_ms is None
        answer = client.post(f"/orders/{order_ref}/delivered", json={"delivered_at": delivered_at})
        assert answer.status_code == 201, answer.text
        future = client.post(f"/orders/{order_ref}/delivered", json={"delivered_at": 10**15})
        assert future.status_code == 200  # delivered already: the first answer stands

        orders = MarketplaceOrders(
            PartnerHttp(partner.base_url, 3.0, partner="marketplace"), time.monotonic
        )

        async def twice() -> tuple:
            first = await orders.find(order_ref)
            stop_process(partner.process)  # the order system goes away
            second = await orders.find(order_ref)
            with pytest.raises(OrderSystemUnavailable):
                await orders.find(f"ORD-{uuid.uuid4().hex[:8]}")
            await orders.aclose()
            return first, second

        first, second = asyncio.run(twice())
    assert first == second
    assert first.delivered_at_ms == delivered_at
    assert (first.tax_basis, first.tax_rate_bp) == ("EXCLUSIVE", 1900)
    assert first.lines[0].category == "shoes"
    assert (first.buyer_id, first.seller_id, first.paid_with) == ("B-1", "S-UK-1", "CARD")


def test_the_front_doors_order_cache_is_bounded_and_expires(
    catalogue_topics: str, tmp_path: Path
) -> None:
    """At most ORDER_CACHE_SIZE delivered orders are kept, each ORDER_CACHE_TTL_S: an order
    pushed out, or kept too long, is asked for again (the double stopped: 503)."""
    settings = {"KAFKA_BOOTSTRAP_SERVERS": catalogue_topics}
    refs = [f"ORD-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    now = [0.0]
    with own_partner("marketplace_server", "MARKETPLACE_", settings, tmp_path) as (partner, client):
        for ref in refs:
            assert client.post("/orders", json=order_body(ref)).status_code == 201
            assert client.post(f"/orders/{ref}/delivered").status_code == 201
        orders = MarketplaceOrders(
            PartnerHttp(partner.base_url, 3.0, partner="marketplace"),
            lambda: now[0],
            CacheTerms(size=2, ttl_s=60.0),
        )

        async def run() -> list[str]:
            for ref in refs:  # the first is pushed out by the third
                await orders.find(ref)
            stop_process(partner.process)
            outcomes = []
            for ref, at in ((refs[2], 59.0), (refs[0], 59.0), (refs[1], 61.0)):
                now[0] = at
                try:
                    found = await orders.find(ref)
                    outcomes.append("kept" if found else "none")
                except OrderSystemUnavailable:
                    outcomes.append("asked")
            await orders.aclose()
            return outcomes

        assert asyncio.run(run()) == ["kept", "asked", "asked"]


def test_the_front_door_checks_the_marketplaces_tokens_with_its_published_keys(
    tmp_path: Path,
) -> None:
    """BearerCheck over HTTP against the double: a buyer's and an agent's token are read
    with the keys of its JWKS; a backdated sign-in is kept; with a key file the key survives
    a restart, without one a new key is fetched again for its new key id; no double: the
    keys are unavailable (503 at the front door)."""
    key_file = tmp_path / "signing-key.pem"
    settings = {"MARKETPLACE_SIGNING_KEY_FILE": str(key_file)}

    def sign_in(client, path: str, body: dict | None = None) -> str:
        answer = client.post(path, json=body or {})
        assert answer.status_code == 201, answer.text
        return f"Bearer {answer.json()['token']}"

    async def check(check_with: BearerCheck, *headers: str) -> list:
        now_s = int(time.time())
        try:
            return [await check_with(header, now_s) for header in headers]
        finally:
            await check_with.key_set.aclose()

    clock = [0.0]  # the keys' clock: a refetch for an unknown key id waits REFETCH_S

    with own_partner("marketplace_server", "MARKETPLACE_", settings, tmp_path / "a") as (
        partner,
        client,
    ):
        jwks = client.get("/.well-known/jwks.json").json()
        assert [(k["kty"], k["alg"], k["use"]) for k in jwks["keys"]] == [("RSA", "RS256", "sig")]
        assert "d" not in jwks["keys"][0]  # the public half only
        signed_in_at = (int(time.time()) - 400) * 1000
        buyer = sign_in(client, "/buyers/B-42/tokens", {"signed_in_at": signed_in_at})
        agent = sign_in(client, "/support-agents/AGENT-1/tokens")
        assert client.post("/buyers/B-42/tokens", json={"signed_in_at": 10**15}).status_code == 422
        http = PartnerHttp(partner.base_url, 3.0, partner="marketplace")
        checker = BearerCheck(MarketplaceKeys(http, lambda: clock[0]), TokenTerms())
        as_buyer, as_agent = asyncio.run(check(checker, buyer, agent))
        assert (as_buyer.subject, as_buyer.role, as_buyer.signed_in_at_s) == (
            "B-42",
            "buyer",
            signed_in_at // 1000,
        )
        assert (as_agent.subject, as_agent.role) == ("AGENT-1", "support")
        first_key = jwks["keys"][0]["kid"]
    assert key_file.exists() and oct(key_file.stat().st_mode)[-3:] == "600"
    with own_partner("marketplace_server", "MARKETPLACE_", settings, tmp_path / "b") as (_, client):
        assert client.get("/.well-known/jwks.json").json()["keys"][0]["kid"] == first_key
    with own_partner("marketplace_server", "MARKETPLACE_", {}, tmp_path / "c") as (partner, client):
        rotated = sign_in(client, "/buyers/B-42/tokens")
        # the checker knew the old key only: the new kid makes it fetch the set again
        checker.key_set.http = PartnerHttp(partner.base_url, 3.0, partner="marketplace")
        with pytest.raises(TokenRefused):  # fetched 0 s ago: not fetched again yet
            asyncio.run(check(checker, rotated))
        clock[0] += REFETCH_S
        [again] = asyncio.run(check(checker, rotated))
        assert again.subject == "B-42"
        stop_process(partner.process)

        async def no_marketplace() -> None:
            fresh = MarketplaceKeys(
                PartnerHttp(partner.base_url, 1.0, partner="marketplace"), time.monotonic
            )
            with pytest.raises(TokenKeysUnavailable):
                await BearerCheck(fresh, TokenTerms())(rotated, int(time.time()))
            await fresh.aclose()

        asyncio.run(no_marketplace())
