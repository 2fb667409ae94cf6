"""How many records the broker holds per topic (sum of end offsets), and how many bytes
the records written between two offset snapshots hold (key + value + headers)."""

from __future__ import annotations

import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.bench.bench_figures import record_bytes, scaled_bytes

# At most this many consecutive offsets are read per partition (from the middle of its
# range, where the load is steady); a partition's bytes are scaled from them.
SAMPLE_PER_PARTITION = 1000


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


async def bytes_written(
    bootstrap: str,
    start: dict[str, dict[int, int]],
    end: dict[str, dict[int, int]],
    topics: list[str],
    sample_per_partition: int = SAMPLE_PER_PARTITION,
    timeout_s: float = 30.0,
) -> tuple[dict[str, int], dict[str, Any]]:
    """Bytes (key + value + headers, as the producers wrote them, before compression) of the
    records of `topics` between two offset snapshots: topic → bytes, and how they were
    measured (records read, partitions sampled, complete or cut by the timeout)."""
    wanted: dict[TopicPartition, tuple[int, int]] = {}
    for topic in topics:
        for partition, stop in end.get(topic, {}).items():
            first = start.get(topic, {}).get(partition, 0)
            if stop <= first:
                continue
            if stop - first > sample_per_partition:  # the middle of the range
                first += (stop - first - sample_per_partition) // 2
                wanted[TopicPartition(topic, partition)] = (first, first + sample_per_partition)
            else:
                wanted[TopicPartition(topic, partition)] = (first, stop)
    ranges = {
        TopicPartition(topic, partition): stop - start.get(topic, {}).get(partition, 0)
        for topic in topics
        for partition, stop in end.get(topic, {}).items()
    }
    read_bytes = dict.fromkeys(wanted, 0)
    records_read = 0
    complete = True
    if wanted:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            isolation_level="read_uncommitted",
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        try:
            consumer.assign(list(wanted))
            for tp, (first, _) in wanted.items():
                consumer.seek(tp, first)
            remaining = set(wanted)
            deadline = time.monotonic() + timeout_s
            while remaining and time.monotonic() < deadline:
                batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=10000)
                for tp, messages in batches.items():
                    stop = wanted[tp][1]
                    for message in messages:
                        if message.offset < stop:
                            read_bytes[tp] += record_bytes(
                                message.key, message.value, message.headers
                            )
                            records_read += 1
                for tp in list(remaining):  # done once the position passed the range
                    if await consumer.position(tp) >= wanted[tp][1]:
                        remaining.discard(tp)
                        consumer.pause(tp)
            complete = not remaining
        finally:
            await consumer.stop()
    by_topic: dict[str, int] = {}
    for tp, (first, stop) in wanted.items():
        scaled = scaled_bytes(read_bytes[tp], stop - first, ranges[tp])
        by_topic[tp.topic] = by_topic.get(tp.topic, 0) + scaled
    sampled = sum(1 for tp, (first, stop) in wanted.items() if stop - first < ranges[tp])
    how = {
        "records_read": records_read,
        "partitions": len(wanted),
        "partitions_sampled": sampled,
        "sample_per_partition": sample_per_partition,
        "complete": complete,
    }
    return by_topic, how
