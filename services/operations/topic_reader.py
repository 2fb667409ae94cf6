"""Read a topic from its beginning to its end as of now (a thin aiokafka adapter)."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition


async def read_topic(bootstrap: str, topic: str, partitions: int) -> list[Any]:
    """Every record of `topic` up to the end offsets taken at the start (no consumer group,
    nothing committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, messages in batch.items():
                records.extend(m for m in messages if m.offset < ends[tp])
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
            if not batch:
                remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return records
