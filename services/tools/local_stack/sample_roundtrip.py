"""The main job for now: write a sample return's first record and read it back.

    python -m services.tools.local_stack.sample_roundtrip

Produces, for one new return, the record the front door writes for an accepted request (a
ReturnAccepted carrying its ReturnRequested in `requested`) with aiokafka, consumes it back
from a fresh consumer group, decodes it and prints the events it stands for.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.decisions.folded_events import unfolded
from services.eventing.avro_codec import AvroCodec
from services.eventing.envelope import new_envelope, now_ms
from services.eventing.event_publisher import EventPublisher, producer_settings
from services.eventing.schema_catalogue import SchemaCatalogue
from services.eventing.topics import RETURNS_EVENTS
from services.tools.local_kafka.broker import checkout_bootstrap


def sample_return(return_id: str) -> list[tuple[str, dict[str, Any]]]:
    requested = {
        "envelope": new_envelope("ReturnRequested", return_id, "sample"),
        "order_ref": "ORD-2026-000123",
        "buyer_id": "buyer-42",
        "seller_id": "seller-7",
        "category": "apparel",
        "market": "ID",
        "reason_code": "WRONG_SIZE",
        "lines": [
            {
                "order_line_id": "L1",
                "sku": "TSHIRT-M-BLUE",
                "quantity_returned": 1,
                "quantity_bought": 2,
                "unit_price": {"amount_minor": 149_000, "currency": "IDR"},
            },
        ],
        "delivered_at": now_ms() - 3 * 24 * 3600 * 1000,
        "payment_method": "EWALLET",
        "buyer_notes": "",
        "photo_refs": [],
        "idempotency_key": None,
    }
    envelope = requested["envelope"]
    accepted = {
        "envelope": new_envelope(
            "ReturnAccepted",
            return_id,
            "sample",
            correlation_id=envelope["correlation_id"],
            causation_id=envelope["event_id"],
        ),
        "policy_version": "sample",
        "rules_fired": [],
        "requested": requested,
    }
    return [("ReturnAccepted", accepted)]


async def roundtrip(bootstrap: str) -> list[dict[str, Any]]:
    codec = AvroCodec(SchemaCatalogue.load())
    return_id = f"RMA-{uuid.uuid4().hex[:12].upper()}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings())
    await producer.start()
    try:
        publisher = EventPublisher(producer, codec)
        sent = sample_return(return_id)
        for name, record in sent:
            meta = await publisher.publish(name, record)
            where = f"{RETURNS_EVENTS.name}[{meta.partition}]@{meta.offset}"
            print(f"sent     {name:<16} {where} key={return_id}")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        RETURNS_EVENTS.name,
        bootstrap_servers=bootstrap,
        group_id=f"sample-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    try:
        while len(received) < len(sent) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for messages in batches.values():
                for message in messages:
                    if message.key != return_id.encode():
                        continue
                    decoded = codec.decode(message.value)
                    where = f"{message.topic}[{message.partition}]@{message.offset}"
                    fingerprint = decoded.writer.fingerprint.hex()
                    print(f"received {decoded.name:<16} {where} fingerprint={fingerprint}")
                    received.append({"name": decoded.name, "record": decoded.record})
    finally:
        await consumer.stop()
    if [r["record"]["envelope"]["event_id"] for r in received] != [
        r["envelope"]["event_id"] for _, r in sent
    ]:
        raise SystemExit(f"read back {len(received)} of {len(sent)} events for {return_id}")
    return received


def main() -> int:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or checkout_bootstrap()
    received = asyncio.run(roundtrip(bootstrap))
    events = [(name, record) for r in received for name, record in unfolded(r["name"], r["record"])]
    for name, record in events:
        print(name, json.dumps(record, indent=2))
    summary = {"bootstrap": bootstrap, "sent": len(received), "read_back": len(received)}
    print(json.dumps({**summary, "events": [name for name, _ in events]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
