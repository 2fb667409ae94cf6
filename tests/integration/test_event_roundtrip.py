"""Envelope-wrapped Avro records through a real broker: produced with aiokafka, read back
by a fresh consumer group, decoded, every field compared."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.eventing.envelope import new_envelope
from services.eventing.event_publisher import CONTENT_TYPE, EventPublisher, producer_settings
from services.eventing.topics import topic_for_record
from tests.support.avro_strategies import sample_record
from tests.support.cli_process import run_python_module

EVENT_TYPES = [
    "ReturnRequested",
    "PickupScheduled",
    "InspectionRecorded",
    "IntakeCompleted",
    "RefundIssued",
    "ReturnFailed",
    "TicketOpened",
]


def _events(catalogue, return_id: str) -> list[tuple[str, dict]]:
    events = []
    correlation = str(uuid.uuid4())
    for seed, name in enumerate(EVENT_TYPES):
        record = sample_record(catalogue.get(name).wire, seed=seed)
        record["envelope"] = new_envelope(
            name, return_id, "integration-test", correlation_id=correlation
        )
        events.append((name, record))
    return events


async def _produce_and_consume(bootstrap: str, codec, events):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings())
    await producer.start()
    try:
        publisher = EventPublisher(producer, codec)
        metadata = [await publisher.publish(name, record) for name, record in events]
    finally:
        await producer.stop()
    topics = sorted({topic_for_record(name).name for name, _ in events})
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=f"it-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    wanted = {record["envelope"]["event_id"] for _, record in events}
    received = {}
    try:
        async with asyncio.timeout(60):
            while len(received) < len(events):
                for messages in (await consumer.getmany(timeout_ms=1000)).values():
                    for message in messages:
                        # only this test's records: the topics may hold others (a reused
                        # broker), even ones written by a schema this checkout never had
                        header_id = dict(message.headers or ()).get("event_id", b"").decode()
                        if header_id not in wanted:
                            continue
                        decoded = codec.decode(message.value)
                        event_id = decoded.record["envelope"]["event_id"]
                        if event_id in wanted:
                            received[event_id] = (message, decoded)
    finally:
        await consumer.stop()
    return metadata, received


def test_records_of_several_types_come_back_field_for_field(catalogue_topics, codec, catalogue):
    return_id = f"RMA-IT-{uuid.uuid4().hex[:8]}"
    events = _events(catalogue, return_id)
    metadata, received = asyncio.run(_produce_and_consume(catalogue_topics, codec, events))

    assert len(received) == len(events)
    partitions = {m.partition for m in metadata}
    assert len(partitions) == 1, "one return's records share a partition on every topic (same key)"
    for name, record in events:
        message, decoded = received[record["envelope"]["event_id"]]
        assert decoded.name == name
        assert decoded.record == record  # every field, nested ones included
        assert message.key == return_id.encode()
        assert message.topic == topic_for_record(name).name
        headers = dict(message.headers)
        assert headers["event_type"] == name.encode()
        assert headers["content-type"] == CONTENT_TYPE
        assert headers["event_id"] == record["envelope"]["event_id"].encode()


def test_the_sample_job_sends_and_reads_back(catalogue_topics):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": catalogue_topics}
    result = run_python_module("services.tools.local_stack.sample_roundtrip", env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    # one record, as the front door writes it: the decision carrying the request it answers
    assert (summary["sent"], summary["read_back"]) == (1, 1)
    assert summary["events"] == ["ReturnRequested", "ReturnAccepted"]
