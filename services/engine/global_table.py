"""A compacted topic read whole by every instance: all partitions, no consumer group, its
latest value per key in memory (a thin aiokafka adapter).

Unlike a table (state_store.py), it is not partitioned with the service's inputs: every
instance holds every key, so a record of any partition can look one up. It is read from the
beginning on first use and caught up to the topic's end whenever a key is missing, so a key
written (and acknowledged) before the record that names it is always found. Its keys are
few by construction (a digest names one policy), so it stays bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.eventing.log_setup import get_logger

Value = TypeVar("Value")
log = get_logger(__name__)


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
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self.value_of = value_of  # raises ValueError for a value it cannot read
        self.client_id = client_id
        self.values: dict[str, Value] = {}
        self.unreadable = 0  # records skipped: a value `value_of` refused
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def get(self, key: str) -> Value | None:
        """The key's value, reading what the topic gained since last time if it is missing."""
        if key in self.values:
            return self.values[key]
        async with self._lock:
            if key not in self.values:
                await self._catch_up()
        return self.values.get(key)

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
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
            await consumer.start()
            try:
                consumer.assign(self._partitions)
                await consumer.seek_to_beginning(*self._partitions)
            except BaseException:
                await consumer.stop()
                raise
            self._consumer = consumer
        return self._consumer
