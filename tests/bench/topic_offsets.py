"""How many records the broker holds per topic (sum of end offsets), and one return's
records read back in the order they were written."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.eventing.avro_codec import AvroCodec, CodecError


async def end_offsets(bootstrap: str) -> dict[str, dict[int, int]]:
    """topic → partition → end offset, for every topic on the cluster (internal ones too)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        metadata = consumer._client.cluster
        partitions = [
            TopicPartition(topic, p)
            for topic in metadata.topics(exclude_internal_topics=False)
            for p in metadata.partitions_for_topic(topic) or ()
        ]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    result: dict[str, dict[int, int]] = {}
    for tp, end in ends.items():
        result.setdefault(tp.topic, {})[tp.partition] = end
    return result


def totals(offsets: dict[str, dict[int, int]]) -> dict[str, int]:
    return {topic: sum(by_partition.values()) for topic, by_partition in offsets.items()}


def is_event_topic(topic: str) -> bool:
    """A topic services talk over (not a changelog, dead letters, operations or internal)."""
    return (
        topic.startswith("boomerang.")
        and not topic.endswith((".dlq", "-changelog"))
        and "operations" not in topic
        and not topic.startswith("boomerang.bench")
    )


async def records_of_returns(
    bootstrap: str,
    return_ids: list[str],
    start: dict[str, dict[int, int]],
    end: dict[str, dict[int, int]],
    codec: AvroCodec,
) -> dict[str, list[dict[str, Any]]]:
    """Per return id, every event-topic record of it written between two offset snapshots,
    in timestamp order: topic, record name, value bytes."""
    keys = {return_id.encode(): return_id for return_id in return_ids}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[tuple[int, str, str, str, bytes]] = []
    try:
        wanted = {
            TopicPartition(topic, p): (start.get(topic, {}).get(p, 0), stop)
            for topic, by_partition in end.items()
            if is_event_topic(topic)
            for p, stop in by_partition.items()
            if stop > start.get(topic, {}).get(p, 0)
        }
        if not wanted:
            return {}
        consumer.assign(list(wanted))
        for tp, (first, _) in wanted.items():
            consumer.seek(tp, first)
        remaining = set(wanted)
        while remaining:
            batches = await consumer.getmany(timeout_ms=1000)
            if not batches:
                break
            for tp, messages in batches.items():
                for message in messages:
                    if message.offset >= wanted[tp][1]:
                        continue
                    if message.key in keys:
                        try:
                            name = codec.decode(message.value).name
                        except CodecError:
                            continue
                        found.append(
                            (message.timestamp, keys[message.key], tp.topic, name, message.value)
                        )
                if messages and messages[-1].offset >= wanted[tp][1] - 1:
                    remaining.discard(tp)
                    consumer.pause(tp)
    finally:
        await consumer.stop()
    found.sort(key=lambda item: item[0])
    by_return: dict[str, list[dict[str, Any]]] = {}
    for _, return_id, topic, name, value in found:
        by_return.setdefault(return_id, []).append({"topic": topic, "name": name, "value": value})
    return by_return
