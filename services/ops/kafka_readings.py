"""What the dashboard reads from Kafka itself (a thin aiokafka adapter): the records on
each dead-letter topic, and each service's consumer lag (the on-call `lag` command's
measure, summarised per service)."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.eventing.topics import STREAMS, dead_letter_topic
from services.tools.oncall.consumer_lag import measure


async def dead_letter_depths(bootstrap: str) -> dict[str, int]:
    """Records held on each dead-letter topic of the catalogue (end − start offsets; a topic
    not created yet holds none)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        existing = set(await consumer.topics())
        depths: dict[str, int] = {}
        for stream in STREAMS:
            spec = dead_letter_topic(stream)
            if spec.name not in existing:
                depths[spec.name] = 0
                continue
            tps = [TopicPartition(spec.name, p) for p in range(spec.partitions)]
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            depths[spec.name] = sum(ends[tp] - starts[tp] for tp in tps)
        return dict(sorted(depths.items()))
    finally:
        await consumer.stop()


async def lag_by_service(bootstrap: str, now_ms: int) -> list[dict[str, Any]]:
    """Per service: its group's state, members, records behind and the oldest one's age."""
    measured = await measure(bootstrap, now_ms)
    return [
        {
            "service": group["service"],
            "group": group["group"],
            "state": group["state"],
            "members": group["members"],
            "lag": group["lag"],
            "oldest_unprocessed_age_s": group["oldest_unprocessed_age_s"],
        }
        for group in measured["groups"]
    ]
