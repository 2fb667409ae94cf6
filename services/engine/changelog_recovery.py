"""Rebuilding the state of newly assigned partitions from their changelogs, and their views
from the topics they fold, before any of their input records is handled."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from services.engine.state_store import Handling, StateStore, handling
from services.eventing.avro_codec import AvroCodec, CodecError
from services.eventing.log_setup import get_logger

log = get_logger(__name__)


class ChangelogUnreadable(RuntimeError):
    """A changelog could not be read: the partitions' state would be incomplete."""


async def recover_partitions(bootstrap: str, store: StateStore, partitions: set[int]) -> int:
    """Read every table's changelog partition in `partitions` from its start to its end into
    `store`; the number of changelog records read."""
    if not partitions or not store.changelog_tables():
        return 0
    started = time.monotonic()
    table_of = {table.changelog: name for name, table in store.changelog_tables().items()}
    wanted = [TopicPartition(topic, p) for topic in table_of for p in sorted(partitions)]
    read = 0
    try:
        async for message in _read_to_end(bootstrap, wanted, "changelogs"):
            if message.key is not None:
                store.restore(
                    table_of[message.topic],
                    message.partition,
                    message.key,
                    message.value,
                    message.headers,
                    message.timestamp or 0,
                )
                read += 1
        store.restored()
    finally:
        store.restoring.clear()
    log.info(
        "state recovered",
        partitions=sorted(partitions),
        changelog_records=read,
        seconds=round(time.monotonic() - started, 3),
    )
    return read


async def rebuild_views(
    bootstrap: str, store: StateStore, partitions: set[int], codec: AvroCodec
) -> int:
    """Fold each view's topics, partitions `partitions`, from their start to their end; the
    number of records folded (a record that does not decode is passed over: the service's
    dead letters have it already)."""
    views = {name: table for name, table in store.tables.items() if table.view is not None}
    if not partitions or not views:
        return 0
    started = time.monotonic()
    folded = 0
    for name, table in views.items():
        assert table.view is not None
        wanted = [TopicPartition(t, p) for t in table.view.topics for p in sorted(partitions)]
        async for message in _read_to_end(bootstrap, wanted, f"view {name}"):
            if message.value is None:
                continue
            try:
                decoded = codec.decode(message.value)
            except CodecError:
                continue
            where = Handling(
                "", message.topic, message.partition, message.offset, message.timestamp or 0
            )
            with handling(where):
                table.view.fold(table, decoded.name, decoded.record)
            folded += 1
    log.info(
        "views rebuilt",
        views=sorted(views),
        partitions=sorted(partitions),
        records=folded,
        seconds=round(time.monotonic() - started, 3),
    )
    return folded


async def _read_to_end(
    bootstrap: str, wanted: list[TopicPartition], what: str
) -> AsyncIterator[ConsumerRecord]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
        metadata_max_age_ms=5_000,
    )
    await consumer.start()
    try:
        consumer.assign(wanted)
        try:
            ends = await consumer.end_offsets(wanted)
        except KafkaError as exc:
            raise ChangelogUnreadable(
                f"{what} {sorted({tp.topic for tp in wanted})} cannot be read (do they exist? "
                f"`boomerang topics` creates them): {exc!r}"
            ) from exc
        remaining = {tp for tp, end in ends.items() if end > 0}
        if remaining:
            await consumer.seek_to_beginning(*remaining)
        while remaining:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for messages in batches.values():
                for message in messages:
                    yield message
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
