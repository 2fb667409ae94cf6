"""A compacted topic read whole by every instance: all partitions, no consumer group, its
latest value per key in memory (a thin aiokafka adapter).

Unlike a table (state_store.py), it is not partitioned with the service's inputs: every
instance holds every key, so a record of any partition can look one up. It is read from the
beginning on first use and caught up to the topic's end whenever a key is missing, so a key
written (and acknowledged) before the record that names it is always found. Its keys are
few by construction (a digest names one policy), so it stays bounded.

A broker that cannot be read (down, the topic missing, a catch-up longer than
CATCH_UP_S) is `GlobalTableUnavailable`, a transient failure: the record that asked is
retried, never dead-lettered for it straight away; the next lookup starts a fresh consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.eventing.handler_contract import TransientFailure
from services.eventing.log_setup import get_logger

Value = TypeVar("Value")
CATCH_UP_S = 10.0
log = get_logger(__name__)


class GlobalTableUnavailable(TransientFailure):
    reason = "global-table-unavailable"


class GlobalTable(Generic[Value]):
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        value_of: Callable[[bytes], Value],
        client_id: str = "boomerang-global-table",
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.declared_partitions = partitions  # more are read if the topic has more
        self.value_of = value_of  # raises ValueError for a value it cannot read
        self.client_id = client_id
        self.values: dict[str, Value] = {}
        self.unreadable = 0  # records skipped: a value `value_of` refused
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._lock = asyncio.Lock()

    async def get(self, key: str) -> Value | None:
        """The key's value, reading what the topic gained since last time if it is missing."""
        if key in self.values:
            return self.values[key]
        async with self._lock:
            if key not in self.values:
                try:
                    async with asyncio.timeout(CATCH_UP_S):
                        await self._catch_up()
                except (KafkaError, TimeoutError) as exc:
                    await self.stop()  # the next miss starts afresh
                    raise GlobalTableUnavailable(
                        f"{self.topic} could not be read to its end: {exc!r}"
                    ) from exc
        return self.values.get(key)

    async def caught_up(self) -> dict[str, Value]:
        """Every value, after reading the topic to its current end (for a reader that
        needs the latest value of keys it has seen before, not just of new keys)."""
        async with self._lock:
            try:
                async with asyncio.timeout(CATCH_UP_S):
                    await self._catch_up()
            except (KafkaError, TimeoutError) as exc:
                await self.stop()
                raise GlobalTableUnavailable(
                    f"{self.topic} could not be read to its end: {exc!r}"
                ) from exc
        return self.values

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(KafkaError):
                await consumer.stop()

    async def _catch_up(self) -> None:
        consumer = await self._started()
        ends = await consumer.end_offsets(self._partitions)
        while True:
            behind = [tp for tp in self._partitions if await consumer.position(tp) < ends[tp]]
            if not behind:
                return
            batches = await consumer.getmany(*behind, timeout_ms=500)
            for messages in batches.values():
                for message in messages:
                    self._take(message.key, message.value)

    def _take(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        name = key.decode(errors="replace")
        if value is None:
            self.values.pop(name, None)
            return
        try:
            self.values[name] = self.value_of(value)
        except ValueError as exc:
            self.unreadable += 1
            log.warning("unreadable record skipped", topic=self.topic, key=name, error=str(exc))

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id=self.client_id,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            try:
                await consumer.start()
                await consumer.topics()  # metadata of every topic: this one's partition count
                found = consumer.partitions_for_topic(self.topic) or set()
                count = max(self.declared_partitions, max(found, default=-1) + 1)
                self._partitions = [TopicPartition(self.topic, p) for p in range(count)]
                consumer.assign(self._partitions)
                await consumer.seek_to_beginning(*self._partitions)
            except BaseException:
                with contextlib.suppress(KafkaError):
                    await consumer.stop()
                raise
            self._consumer = consumer
        return self._consumer
