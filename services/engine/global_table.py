"""A compacted topic read whole by every instance: all partitions, no consumer group, its
latest value per key in memory (a thin aiokafka adapter).

Unlike a table (state_store.py), it is not partitioned with the service's inputs: every
instance holds every key, so a record of any partition can look one up. It is read from the
beginning on first use and caught up to the topic's end whenever a key is missing, so a key
written (and acknowledged) before the record that names it is always found (or, with
`caught_up`, whenever values may have changed). The policy snapshots' keys are few by
construction (a digest names one policy); the risk windows' are every buyer, seller, SKU,
address and order of the longest window (docs/risk.md: every instance holds them all).

A broker that cannot be read (down, the topic missing, a catch-up longer than
CATCH_UP_S) is `GlobalTableUnavailable`, a transient failure: the record that asked is
retried, never dead-lettered for it straight away; the next lookup starts a fresh consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
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
        key_of: Callable[[bytes], str] = bytes.decode,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.declared_partitions = partitions  # more are read if the topic has more
        self.value_of = value_of  # raises ValueError for a value it cannot read
        self.key_of = key_of  # a table's changelog writes its keys as JSON strings
        self.client_id = client_id
        self.values: dict[str, Value] = {}
        self.unreadable = 0  # records skipped: a value `value_of` refused
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._lock = asyncio.Lock()
        self._caught_up_at = -1e18  # monotonic time the last full catch-up started

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

    async def caught_up(self, max_age_s: float = 0.0) -> dict[str, Value]:
        """Every value, after reading the topic to its end as of at most `max_age_s` before
        this call (for a reader that needs recent values of keys it has seen before, not
        just new keys). Readers share catch-ups: one that started after a reader asked (or
        up to `max_age_s` before) serves it, so readers waiting behind a catch-up are served
        by the next one together, not by one each (which, once a catch-up took longer than
        `max_age_s`, made every reader wait for all the others' catch-ups)."""
        asked = time.monotonic()
        async with self._lock:
            if self._caught_up_at >= asked - max_age_s:
                return self.values
            started = time.monotonic()
            try:
                async with asyncio.timeout(CATCH_UP_S):
                    await self._catch_up()
            except (KafkaError, TimeoutError) as exc:
                await self.stop()
                raise GlobalTableUnavailable(
                    f"{self.topic} could not be read to its end: {exc!r}"
                ) from exc
            self._caught_up_at = started
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
        try:
            name = self.key_of(key)
        except ValueError:
            self.unreadable += 1
            return
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
