"""A GlobalTable on the real broker: every partition of a compacted topic read whole, a key
written after the first read found by catching up, an unreadable record skipped and
counted (the coordinator's policy snapshots, services/coordinator/app.py)."""

from __future__ import annotations

import asyncio
import uuid
from functools import partial

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.coordinator.app import policy_json_of
from services.engine.global_table import GlobalTable
from services.eventing.envelope import new_envelope
from services.eventing.event_publisher import producer_settings

PARTITIONS = 3


def snapshot(codec, digest: str, policy_json: str) -> bytes:
    record = {
        "envelope": new_envelope("PolicySnapshotPublished", "RMA-GT-1", "integration-test"),
        "policy_digest": digest,
        "policy_version": "DE/market:default@v1",
        "policy_json": policy_json,
    }
    return codec.encode("PolicySnapshotPublished", record)


async def _create(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        config = {"cleanup.policy": "compact"}
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1, topic_configs=config)])
    finally:
        await admin.close()


async def _write(bootstrap: str, topic: str, records: list[tuple[int, str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings())
    await producer.start()
    try:
        for partition, key, value in records:
            await producer.send_and_wait(topic, value, key=key.encode(), partition=partition)
    finally:
        await producer.stop()


def test_every_partition_is_read_and_a_key_written_later_is_found_by_catching_up(
    kafka_bootstrap, codec
):
    topic = f"it-global-table-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        await _create(kafka_bootstrap, topic)
        await _write(
            kafka_bootstrap,
            topic,
            [(p, f"d-{p}", snapshot(codec, f"d-{p}", f'{{"p":{p}}}')) for p in range(PARTITIONS)]
            + [(1, "d-bad", b"not an avro frame")],
        )
        table = GlobalTable(kafka_bootstrap, topic, PARTITIONS, partial(policy_json_of, codec))
        try:
            assert [await table.get(f"d-{p}") for p in range(PARTITIONS)] == [
                '{"p":0}',
                '{"p":1}',
                '{"p":2}',
            ]
            assert await table.get("d-bad") is None and table.unreadable == 1
            assert await table.get("d-later") is None  # read to the end: not there
            await _write(kafka_bootstrap, topic, [(2, "d-later", snapshot(codec, "d-later", "{}"))])
            assert await table.get("d-later") == "{}"
            # concurrent misses for one key catch up once, and all find it
            await _write(kafka_bootstrap, topic, [(0, "d-both", snapshot(codec, "d-both", "[]"))])
            both = await asyncio.gather(table.get("d-both"), table.get("d-both"))
            assert both == ["[]", "[]"]
            assert table.unreadable == 1  # the bad record was read once
        finally:
            await table.stop()

    asyncio.run(scenario())
