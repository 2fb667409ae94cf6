"""Replaying consumer groups: wait until a stopped group is empty, rewind it to the earliest
offsets, and wait until the replayed groups have caught up again."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata
from rich.console import Console

from services.eventing.topics import by_name
from services.tools.oncall.replay_effects import CONSUMERS

console = Console(stderr=True)
# The consumers the replay rewinds (service -> its agents), and their topics from the on-call
# catalogue of consumers (itself checked against every service's wiring by
# tests/unit/test_replay_effects.py). The refund service's order ledger is not rewound.
REPLAYED_AGENTS = {
    "coordinator": ("saga",),
    "refund": ("refund-commands",),
    "warehouse-intake": ("intake-commands", "ledger"),
}
REPLAYED = {
    f"boomerang-{service}": tuple(
        by_name(topic)
        for topic, consumers in CONSUMERS.items()
        if any(c.service == service and c.agent in agents for c in consumers)
    )
    for service, agents in REPLAYED_AGENTS.items()
}


async def wait_until_group_empty(bootstrap: str, group: str, timeout_s: float = 90) -> None:
    """A stopped static member leaves the group only when its session times out."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            [described] = await admin.describe_consumer_groups([group])
            state = described.groups[0][2] if hasattr(described, "groups") else "Unknown"
            if state in ("Empty", "Dead"):
                return
            await asyncio.sleep(1)
        raise RuntimeError(f"consumer group {group} still has members after {timeout_s:.0f}s")
    finally:
        await admin.close()


async def rewind_group(bootstrap: str, group: str, topics: tuple) -> int:
    """Commit offset 0 for every partition of `topics` in `group`; returns the records ahead."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(t.name, p) for t in topics for p in range(t.partitions)]
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit(
            {tp: OffsetAndMetadata(starts[tp], "chaos replay") for tp in partitions}
        )
        return sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        await consumer.stop()


async def group_lag(bootstrap: str, group: str, topics: tuple) -> int:
    """Records in `topics` that `group` has not committed yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        partitions = [TopicPartition(t.name, p) for t in topics for p in range(t.partitions)]
        ends = await consumer.end_offsets(partitions)
        return sum(ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in partitions)
    finally:
        await consumer.stop()
        await admin.close()


async def wait_for_group(
    bootstrap: str, group: str, topics: tuple, timeout_s: float, settle_s: float = 2.0
) -> bool:
    """Wait until `group` has committed everything in `topics` (its state persisted with
    it), then `settle_s` for readers of its changelog; False when the time ran out."""
    deadline = time.monotonic() + timeout_s
    while await group_lag(bootstrap, group, topics) > 0:
        if time.monotonic() > deadline:
            console.print(f"  {group} still behind after {timeout_s:.0f}s")
            return False
        await asyncio.sleep(1.0)
    await asyncio.sleep(settle_s)
    return True


async def wait_until_consumed(bootstrap: str, timeout_s: float = 120) -> None:
    """Every replayed group has caught up (the ledger books a movement after the saga ends)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lags = [await group_lag(bootstrap, g, t) for g, t in REPLAYED.items()]
        if sum(lags) == 0:
            return
        await asyncio.sleep(2)
    console.print(f"  consumers still behind after {timeout_s:.0f}s")
