"""Read a topic from its beginning to its end as of now (a thin aiokafka adapter), and the
codec that decodes its records."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition

if TYPE_CHECKING:
    from services.eventing.avro_codec import AvroCodec


def catalogue_codec() -> AvroCodec:
    """The Avro codec of this checkout's schema catalogue (loaded when called)."""
    from services.eventing.avro_codec import AvroCodec
    from services.eventing.schema_catalogue import SchemaCatalogue

    return AvroCodec(SchemaCatalogue.load())


async def read_topic(bootstrap: str, topic: str, partitions: int) -> list[Any]:
    """Every record of `topic` up to the end offsets taken at the start (no consumer group,
    nothing committed)."""
    # "earliest": a partition whose first position is looked up after the seek below (the
    # lookup races it on a busy machine) starts at the beginning too, never at the end
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
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


async def read_ranges(
    bootstrap: str,
    topic: str,
    ranges: dict[int, tuple[int, int]],
    on_record: Callable[[Any], None] | None = None,
) -> list[Any]:
    """The records of `topic` at offsets [start, end) of each partition, in offset order per
    partition (a gap, e.g. a compacted or transaction-marker offset, is skipped)."""
    wanted = {TopicPartition(topic, p): span for p, span in ranges.items() if span[1] > span[0]}
    if not wanted:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    try:
        consumer.assign(list(wanted))
        for tp, (start, _) in wanted.items():
            consumer.seek(tp, start)
        remaining = set(wanted)
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, messages in batch.items():
                end = wanted[tp][1]
                for message in messages:
                    if message.offset < end:
                        records.append(message)
                        if on_record is not None:
                            on_record(message)
                if messages and messages[-1].offset + 1 >= end:
                    remaining.discard(tp)
            if not batch:
                remaining = {tp for tp in remaining if await consumer.position(tp) < wanted[tp][1]}
    finally:
        await consumer.stop()
    return records


async def offset_bounds(
    bootstrap: str, topic: str, partitions: int
) -> tuple[dict[int, int], dict[int, int]]:
    """(log start, end) offsets per partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        return {tp.partition: starts[tp] for tp in tps}, {tp.partition: ends[tp] for tp in tps}
    finally:
        await consumer.stop()


async def offsets_at(bootstrap: str, topic: str, partitions: int, time_ms: int) -> dict[int, int]:
    """Per partition, the first offset whose timestamp is at or after `time_ms` (the end
    offset when there is none)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        found = await consumer.offsets_for_times({tp: time_ms for tp in tps})
        ends = await consumer.end_offsets(tps)
        return {
            tp.partition: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in tps
        }
    finally:
        await consumer.stop()
