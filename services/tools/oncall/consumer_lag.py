"""Consumer lag per service, topic and partition, with the oldest unprocessed record's age
(a thin aiokafka adapter over the consumer catalogue of `replay_effects`)."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.engine.oldest_records import timestamp_at
from services.tools.oncall.replay import group_members, topic_spec
from services.tools.oncall.replay_effects import CONSUMERS


def topics_by_service() -> dict[str, list[str]]:
    found: dict[str, set[str]] = {}
    for topic, consumers in CONSUMERS.items():
        for consumer in consumers:
            found.setdefault(consumer.service, set()).add(topic)
    return {service: sorted(topics) for service, topics in sorted(found.items())}


async def measure(bootstrap: str, now_ms: int, service: str | None = None) -> dict[str, Any]:
    """{"groups": [{service, group, state, members, lag, oldest_age_s, partitions: [...]}]}"""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await reader.start()
    groups = []
    try:
        for name, topics in topics_by_service().items():
            if service is not None and name != service:
                continue
            group = f"boomerang-{name}"
            state, members = await group_members(bootstrap, group)
            committed = await admin.list_consumer_group_offsets(group)
            tps = [TopicPartition(t, p) for t in topics for p in range(topic_spec(t).partitions)]
            ends = await reader.end_offsets(tps)
            starts = await reader.beginning_offsets(tps)
            rows = []
            for tp in tps:
                done = committed.get(tp)
                position = done.offset if done is not None and done.offset >= 0 else starts[tp]
                lag = max(0, ends[tp] - position)
                oldest = await timestamp_at(reader, tp, position) if lag else None
                rows.append(
                    {
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "committed": done.offset if done is not None else -1,
                        "end": ends[tp],
                        "lag": lag,
                        "oldest_unprocessed_age_s": None
                        if oldest is None
                        else round(max(0, now_ms - oldest) / 1000, 1),
                    }
                )
            ages = [r["oldest_unprocessed_age_s"] for r in rows if r["oldest_unprocessed_age_s"]]
            groups.append(
                {
                    "service": name,
                    "group": group,
                    "state": state,
                    "members": members,
                    "lag": sum(r["lag"] for r in rows),
                    "oldest_unprocessed_age_s": max(ages, default=None),
                    "partitions": rows,
                }
            )
    finally:
        await reader.stop()
        await admin.close()
    return {"groups": groups, "total_lag": sum(g["lag"] for g in groups)}
