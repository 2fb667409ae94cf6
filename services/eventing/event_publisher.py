"""Thin aiokafka adapter: encode a message with the codec and write it, keyed by return_id."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer

from services.eventing.avro_codec import AvroCodec
from services.eventing.envelope import check_envelope
from services.eventing.topics import topic_for_record

CONTENT_TYPE = b"application/vnd.apache.avro+single-object"


def producer_settings() -> dict[str, Any]:
    """Durable by default: every write acknowledged by all in-sync replicas, idempotent; the
    records of 5 ms share a batch of up to 256 KB (the services' producer and the bench's raw
    pipe both use these)."""
    return {"acks": "all", "enable_idempotence": True, "linger_ms": 5, "max_batch_size": 256 * 1024}


def record_headers(record_name: str, record: dict[str, Any]) -> list[tuple[str, bytes]]:
    envelope = record["envelope"]
    return [
        ("content-type", CONTENT_TYPE),
        ("event_type", record_name.encode()),
        ("event_id", str(envelope["event_id"]).encode()),
    ]


class EventPublisher:
    def __init__(self, producer: AIOKafkaProducer, codec: AvroCodec) -> None:
        self.producer = producer
        self.codec = codec

    async def publish(
        self,
        record_name: str,
        record: dict[str, Any],
        topic: str | None = None,
        key: bytes | None = None,
    ) -> Any:
        """Write and wait for the broker's acknowledgement; returns the RecordMetadata.
        The key is the return_id unless a repartitioned topic asks for another."""
        return await (await self.send(record_name, record, topic, key))

    async def send(
        self,
        record_name: str,
        record: dict[str, Any],
        topic: str | None = None,
        key: bytes | None = None,
    ) -> asyncio.Future:
        """Encode and hand the record to the producer; the future resolves to its
        RecordMetadata once the broker acknowledged it (or fails with a KafkaError)."""
        default_topic, record_key, value, headers = encoded_record(
            self.codec, record_name, record, key
        )
        return await self.producer.send(
            topic or default_topic, value=value, key=record_key, headers=headers
        )


def encoded_record(
    codec: AvroCodec,
    record_name: str,
    record: dict[str, Any],
    key: bytes | None = None,
    checked: bool = True,
) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    """(catalogue topic, key, value, headers) of one record; the key is the return_id unless
    a repartitioned topic gives another. `checked`: the envelope and the schema validated
    first (see AvroCodec.encode)."""
    if checked:
        check_envelope(record_name, record)
    value = codec.encode(record_name, record, checked)
    record_key = key or record["envelope"]["return_id"].encode()
    return (
        topic_for_record(record_name).name,
        record_key,
        value,
        record_headers(record_name, record),
    )
