"""Rebuilding the state of newly assigned partitions from their changelogs, before any of
their input records is handled."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.engine.state_store import StateStore
from services.eventing.log_setup import get_logger

log = get_logger(__name__)


class ChangelogUnreadable(RuntimeError):
    """A changelog could not be read: the partitions' state would be incomplete."""


async def recover_partitions(bootstrap: str, store: StateStore, partitions: set[int]) -> int:
    """Read every table's changelog partition in `partitions` from its start to its end into
    `store`; the number of changelog records read."""
    if not partitions or not store.tables:
        return 0
    started = time.monotonic()
    table_of = {table.changelog: name for name, table in store.tables.items()}
    wanted = [TopicPartition(topic, p) for topic in table_of for p in sorted(partitions)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
        metadata_max_age_ms=5_000,
    )
    await consumer.start()
    read = 0
    try:
        consumer.assign(wanted)
        try:
            ends = await consumer.end_offsets(wanted)
        except KafkaError as exc:
            raise ChangelogUnreadable(
                f"changelogs {sorted(table_of)} cannot be read (do they exist? `boomerang "
                f"topics` creates them): {exc!r}"
            ) from exc
        remaining = {tp for tp, end in ends.items() if end > 0}
        if remaining:
            await consumer.seek_to_beginning(*remaining)
        while remaining:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, messages in batches.items():
                name = table_of[tp.topic]
                for message in messages:
                    if message.key is not None:
                        store.restore(
                            name, tp.partition, message.key, message.value, message.headers
                        )
                        read += 1
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        store.restored()
    finally:
        store.restoring.clear()
        await consumer.stop()
    log.info(
        "state recovered",
        partitions=sorted(partitions),
        changelog_records=read,
        seconds=round(time.monotonic() - started, 3),
    )
    return read
