"""Which instance of a service owns the partition of a key, so an HTTP request about one
return reaches the process that holds its state (Kafka Streams' "interactive queries").

Each instance advertises its HTTP address in its consumer-group membership (the user data of
the range assignor's metadata, which the broker keeps per member); any instance reads the
group's members and assignments with one DescribeGroups request and so knows who owns which
partition. The map is read again after each rebalance of this instance, every few seconds,
and when a lookup misses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from services.eventing.log_setup import get_logger

log = get_logger(__name__)
STALE_AFTER_S = 5.0  # the map is read again at least this often while requests need it
MISS_REFRESH_S = 1.0  # a lookup that finds no owner reads the map again at most this often


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key` (the producer's, and the Java
    client's): murmur2 of its UTF-8 bytes, positive, modulo the partition count."""
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


def advertising_assignor(advertised_url: str) -> type[RangePartitionAssignor]:
    """The range assignor (co-partitioned inputs stay together), whose member metadata also
    carries this instance's HTTP address; still named "range" for the other members."""
    user_data = orjson.dumps({"url": advertised_url})

    class AdvertisingRangeAssignor(RangePartitionAssignor):
        @classmethod
        def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
            return ConsumerProtocolMemberMetadata(cls.version, list(topics), user_data)

    return AdvertisingRangeAssignor


def owners_from_members(members: Sequence[Sequence[Any]], topic: str) -> dict[int, str]:
    """partition of `topic` → advertised URL, from DescribeGroups members (member_id,
    client_id, client_host, metadata bytes, assignment bytes). A member that advertises
    nothing (an older build) or whose bytes do not decode owns nothing here."""
    owners: dict[int, str] = {}
    for member in members:
        metadata_bytes, assignment_bytes = member[-2], member[-1]
        try:
            metadata = ConsumerProtocolMemberMetadata.decode(metadata_bytes)
            url = orjson.loads(metadata.user_data)["url"] if metadata.user_data else None
            assignment = ConsumerProtocolMemberAssignment.decode(assignment_bytes)
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            log.warning("a group member's metadata does not decode", error=repr(exc))
            continue
        if not isinstance(url, str):
            continue
        for assigned_topic, numbers in assignment.assignment:
            if assigned_topic == topic:
                owners.update(dict.fromkeys(numbers, url))
    return owners


class PartitionOwners:
    """The group's partition → instance map, read from the broker (an adapter; no I/O
    before `refresh`)."""

    def __init__(self, bootstrap: str, group_id: str, topic: str, client_id: str) -> None:
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topic = topic
        self.client_id = client_id
        self.owners: Mapping[int, str] = {}
        self.read_at = 0.0
        self.read_in_generation = -1  # the caller's rebalance count when the map was read
        self._admin: AIOKafkaAdminClient | None = None
        self._refreshing: asyncio.Lock | None = None

    async def refresh(self) -> None:
        """Read the map again (a broker error keeps the previous one)."""
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            try:
                if self._admin is None:
                    self._admin = AIOKafkaAdminClient(
                        bootstrap_servers=self.bootstrap, client_id=f"{self.client_id}-owners"
                    )
                    await self._admin.start()
                [described] = await self._admin.describe_consumer_groups([self.group_id])
                members = described.groups[0][5]
            except (TimeoutError, KafkaError, OSError) as exc:
                log.warning("partition owners not read; the last map stays", error=repr(exc))
                await self._forget_admin()
                return
            self.owners = owners_from_members(members, self.topic)
            self.read_at = time.monotonic()

    async def owner_of(self, partition: int, generation: int) -> str | None:
        """The advertised URL of `partition`'s owner; the map is read again when stale, when
        it names no owner, or when this instance went through a rebalance since
        (`generation`: its count of rebalances)."""
        age = time.monotonic() - self.read_at
        missing = partition not in self.owners and age >= MISS_REFRESH_S
        if age >= STALE_AFTER_S or missing or generation != self.read_in_generation:
            self.read_in_generation = generation
            await self.refresh()
        return self.owners.get(partition)

    async def all_owners(self, generation: int) -> Mapping[int, str]:
        """The whole map, read again when stale or after this instance's rebalance."""
        stale = time.monotonic() - self.read_at >= MISS_REFRESH_S
        if stale or generation != self.read_in_generation:
            self.read_in_generation = generation
            await self.refresh()
        return self.owners

    async def stop(self) -> None:
        await self._forget_admin()

    async def _forget_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                await admin.close()
            except (KafkaError, OSError) as exc:
                log.warning("closing the owners' admin client failed", error=repr(exc))
