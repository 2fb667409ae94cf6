"""Settlement's consumer on the real broker and a real PostgreSQL
(services/settlement/consumer.py): an order, a refund issued and a completed return are
booked once, balanced, with the offsets in the same transaction; a completion that comes
before its order waits for it; a replay of every topic from the start books nothing; a
completion that cannot be settled is kept with its reason."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer
from psycopg import AsyncConnection

from services.decisions.event_ids import envelope_of
from services.decisions.settlement.return_postings import SettlementTerms
from services.eventing.avro_codec import AvroCodec
from services.eventing.event_publisher import EventPublisher, producer_settings
from services.eventing.topics import ORDERS
from services.settlement.consumer import SettlementConsumer
from services.settlement.schema_migrations import apply_migrations
from tests.support.return_events import event

NOW = int(time.time() * 1000)


def order_placed(order_ref: str, seller_id: str) -> dict[str, Any]:
    order = {
        "order_ref": order_ref,
        "market": "DE",
        "buyer_id": "B-1",
        "seller_id": seller_id,
        "currency": "EUR",
        "seller_currency": "GBP",
        "fx_rate": "0.8563",
        "shipping_fee_minor": 0,
        "paid_with": "CARD",
        "pickup_address": "",
        "lines": [
            {
                "line_id": "L1",
                "sku": "SKU-1",
                "quantity": 1,
                "unit_price_minor": 1_999,
                "discount_minor": 0,
                "commission_bps": 1_500,
                "serials": [],
            }
        ],
        "placed_at": NOW - 86_400_000,
    }
    envelope = envelope_of(
        "OrderPlaced", order_ref, "marketplace", event_id=str(uuid.uuid4()), occurred_at=NOW
    )
    return {"envelope": envelope, "order": order}


def breakdown_line(amount: int, restocking: int) -> dict[str, Any]:
    return {
        "line_id": "L1",
        "sku": "SKU-1",
        "quantity": 1,
        "currency": "EUR",
        "unit_price_minor": 1_999,
        "gross_minor": 1_999,
        "discount_minor": 0,
        "goods_minor": 1_999,
        "tax_minor": 0,
        "tax_included_minor": 0,
        "shipping_minor": 0,
        "return_shipping_minor": 0,
        "restocking_fee_minor": restocking,
        "damage_deduction_minor": 0,
        "amount_minor": amount,
    }


def completed(return_id: str, order_ref: str, liable: str | None = "SELLER") -> dict[str, Any]:
    envelope = envelope_of(
        "ReturnCompleted", return_id, "coordinator", event_id=str(uuid.uuid4()), occurred_at=NOW
    )
    return {
        "envelope": envelope,
        "refunded": {"amount_minor": 1_899, "currency": "EUR"},
        "completed_at": NOW,
        "liable": liable,
        "breakdown": [breakdown_line(1_899, 100)],
        "method": "CARD",
        "provider": "psp",
        "provider_refund_id": f"RF-{return_id}",
        "idempotency_key": f"{return_id}-refund-1",
        "order_ref": order_ref,
    }


def issued(return_id: str) -> dict[str, Any]:
    return event(
        "RefundIssued",
        return_id,
        amount={"amount_minor": 1_899, "currency": "EUR"},
        provider="psp",
        provider_refund_id=f"RF-{return_id}",
    )


async def publish(
    bootstrap: str, codec: AvroCodec, records: list[tuple[str, dict]]
) -> dict[tuple[str, int], int]:
    """Write the records; per partition, the offset after the last of them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings())
    await producer.start()
    written: dict[tuple[str, int], int] = {}
    try:
        publisher = EventPublisher(producer, codec)
        for name, record in records:
            topic = ORDERS.name if name.startswith("Order") else None
            meta = await publisher.publish(name, record, topic)
            key = (meta.topic, meta.partition)
            written[key] = max(written.get(key, 0), meta.offset + 1)
    finally:
        await producer.stop()
    return written


async def consume_until(consumer: SettlementConsumer, done, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not await done():
        assert time.monotonic() < deadline, "the consumer did not catch up"
        await consumer.poll_once(500)


async def entries_of(conn: AsyncConnection, *return_ids: str) -> list[tuple[str, str]]:
    cursor = await conn.execute(
        "SELECT return_id, step FROM journal_entries WHERE return_id = ANY(%s) ORDER BY 1, 2",
        (list(return_ids),),
    )
    return await cursor.fetchall()


def test_orders_refunds_and_completions_are_booked_once_and_a_replay_books_nothing(
    catalogue_topics: str, codec: AvroCodec, postgres_database: str
) -> None:
    run = uuid.uuid4().hex[:8]
    early, late, broken = f"RMA-S-{run}-1", f"RMA-S-{run}-2", f"RMA-S-{run}-3"
    seller = f"S-{run}"
    records = [
        ("OrderPlaced", order_placed(f"O-{run}-1", seller)),
        ("RefundIssued", issued(early)),
        ("ReturnCompleted", completed(early, f"O-{run}-1")),
        ("RefundIssued", issued(late)),
        ("ReturnCompleted", completed(late, f"O-{run}-2")),  # its order comes after
        ("ReturnCompleted", completed(broken, f"O-{run}-1", liable=None)),
        ("OrderPlaced", order_placed(f"O-{run}-2", seller)),
    ]
    written = asyncio.run(publish(catalogue_topics, codec, records))

    async def scenario() -> None:
        async with await AsyncConnection.connect(postgres_database, autocommit=True) as conn:
            await apply_migrations(conn)
            group = f"settlement-it-{run}"
            consumer = SettlementConsumer(catalogue_topics, conn, codec, SettlementTerms(), group)

            async def all_read() -> bool:  # its records may sit on other partitions
                cursor = await conn.execute(
                    "SELECT count(*) FROM settlement_rejects WHERE return_id = %s", (broken,)
                )
                rejected = (await cursor.fetchone())[0]
                return len(await entries_of(conn, early, late)) == 4 and rejected == 1

            await consumer.start()
            try:
                await consume_until(consumer, all_read)
            finally:
                await consumer.stop()
            assert await entries_of(conn, early, late) == [
                (early, "liability"),
                (early, f"refund:{early}-refund-1"),
                (late, "liability"),
                (late, f"refund:{late}-refund-1"),
            ]
            assert await consumer.store.imbalance() == {}
            balances = await consumer.store.balances(f"seller_payable:{seller}:")
            # per return: 1,999 item, −300 commission, −100 restocking → GBP 1,712 − 257 − 86
            assert balances == {f"seller_payable:{seller}:GBP": 2 * 1_369}
            cursor = await conn.execute(
                "SELECT reason FROM settlement_rejects WHERE return_id = %s", (broken,)
            )
            assert "no liable party" in (await cursor.fetchone())[0]
            cursor = await conn.execute("SELECT count(*) FROM pending_completions")
            pending_before = (await cursor.fetchone())[0]

            # an on-call replay of every topic: from the start again
            await conn.execute("UPDATE consumer_offsets SET next_offset = 0")
            before = await consumer.store.balances(f"seller_payable:{seller}:")
            replay = SettlementConsumer(catalogue_topics, conn, codec, SettlementTerms(), group)
            await replay.start()
            try:

                async def read_past_this_runs_records() -> bool:
                    stored = await replay.store.stored_offsets()
                    return all(stored.get(key, 0) >= end for key, end in written.items())

                await consume_until(replay, read_past_this_runs_records)
            finally:
                await replay.stop()
            assert replay.duplicates >= 4  # this run's entries, met again and not booked
            assert await consumer.store.balances(f"seller_payable:{seller}:") == before
            assert await consumer.store.imbalance() == {}
            assert await entries_of(conn, early, late) == [
                (early, "liability"),
                (early, f"refund:{early}-refund-1"),
                (late, "liability"),
                (late, f"refund:{late}-refund-1"),
            ]
            cursor = await conn.execute("SELECT count(*) FROM pending_completions")
            assert (await cursor.fetchone())[0] == pending_before

    asyncio.run(scenario())


def test_a_refund_failed_after_it_was_issued_is_reversed_and_the_next_attempt_booked(
    catalogue_topics: str, codec: AvroCodec, postgres_database: str
) -> None:
    return_id = f"RMA-F-{uuid.uuid4().hex[:8]}"
    first, second = f"{return_id}-refund-1", f"{return_id}-refund-2"
    voided, refused = f"{return_id}-V", f"{return_id}-X"
    money = {"amount_minor": 2_500, "currency": "EUR"}
    records = [
        (
            "RefundIssued",
            event("RefundIssued", return_id, amount=money, provider="psp")
            | {"idempotency_key": first, "status": "PENDING"},
        ),
        (
            "RefundFailed",
            event("RefundFailed", return_id, amount=money, provider="psp")
            | {"idempotency_key": first, "decline_code": "account_closed", "retryable": True},
        ),
        (
            "RefundIssued",
            event("RefundIssued", return_id, amount=money, provider="psp")
            | {"idempotency_key": second},
        ),
        (  # another return's pending refund, cancelled by its compensation
            "RefundIssued",
            event("RefundIssued", voided, amount=money, provider="psp")
            | {"idempotency_key": f"{voided}-refund-1", "provider_refund_id": "RF-V"},
        ),
        (
            "RefundVoided",
            event("RefundVoided", voided, amount=money) | {"provider_refund_id": "RF-V"},
        ),
        (  # a value the database refuses (its currency column holds 3 letters)
            "ReturnCompleted",
            completed(refused, f"O-{refused}")
            | {"refunded": {"amount_minor": 1, "currency": "EURO"}},
        ),
    ]
    written = asyncio.run(publish(catalogue_topics, codec, records))

    async def scenario() -> None:
        async with await AsyncConnection.connect(postgres_database, autocommit=True) as conn:
            await apply_migrations(conn)
            group = f"settlement-failed-{return_id}"
            consumer = SettlementConsumer(catalogue_topics, conn, codec, SettlementTerms(), group)

            async def read_them() -> bool:
                stored = await consumer.store.stored_offsets()
                return all(stored.get(key, 0) >= end for key, end in written.items())

            await consumer.start()
            try:
                await consume_until(consumer, read_them)
            finally:
                await consumer.stop()
            assert await entries_of(conn, return_id) == [
                (return_id, f"refund:{first}"),
                (return_id, f"refund:{second}"),
                (return_id, f"reversal:refund:{first}"),
            ]
            assert await consumer.store.imbalance() == {}
            balances = await consumer.store.balances("psp_clearing:psp:EUR")
            cursor = await conn.execute(
                "SELECT sum(p.amount_minor) FROM postings p JOIN journal_entries e"
                " ON e.entry_id = p.entry_id AND e.booked_at = p.booked_at"
                " WHERE e.return_id = %s AND p.account = 'psp_clearing:psp:EUR'",
                (return_id,),
            )
            assert (await cursor.fetchone())[0] == -2_500  # paid once, by the second attempt
            assert balances  # the provider's clearing account exists
            cursor = await conn.execute(
                "SELECT decline_code FROM refund_declines WHERE merchant_reference = %s", (first,)
            )
            assert (await cursor.fetchone())[0] == "account_closed"
            assert await entries_of(conn, voided) == [
                (voided, f"refund:{voided}-refund-1"),
                (voided, f"reversal:refund:{voided}-refund-1"),
            ]
            cursor = await conn.execute(
                "SELECT reason FROM settlement_rejects WHERE reason LIKE 'refused by the database%'"
            )
            assert len(await cursor.fetchall()) == 1  # kept aside; the rest of its poll booked

    asyncio.run(scenario())
