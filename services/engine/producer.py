"""The process's one Kafka producer: acks=all, idempotent, records of all in-flight work
sharing its batches (one produce request per broker per linger, not per record).

`send` hands records over and returns their futures without waiting; `publish` waits until
the broker acknowledged them, and `publish_durably` waits out a broker that is down (an
input is not done, so not committed, until its effects are on the broker).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.engine import loop_metrics
from services.eventing.avro_codec import AvroCodec
from services.eventing.event_publisher import encoded_record, producer_settings
from services.eventing.handler_contract import Outbound
from services.eventing.log_setup import get_logger
from services.eventing.topics import topic_for_record

log = get_logger(__name__)


class RecordProducer:
    def __init__(
        self,
        bootstrap: str,
        client_id: str,
        codec: AvroCodec,
        topic_of: Callable[[str], str] = lambda name: topic_for_record(name).name,
        linger_ms: int | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.codec = codec
        self.topic_of = topic_of  # record name → topic (the catalogue's, unless a test says)
        self.settings = producer_settings()
        if linger_ms is not None:
            self.settings["linger_ms"] = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self._started()

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    client_id=self.client_id,
                    metadata_max_age_ms=5_000,
                    **self.settings,
                )
                await producer.start()
                self._producer = producer
            return self._producer

    async def reset(self) -> None:
        """Drop a producer that keeps failing; the next send starts a fresh one."""
        async with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    def encode(self, outbound: Sequence[Outbound]) -> list[tuple[str, bytes, bytes, list]]:
        """(topic, key, value, headers) per record; raises CodecError for a record its
        schema refuses (a handler's bug: the input is dead-lettered). Not validated against
        the schema first: the engine's records are built by handlers from decoded records or
        parsed requests (typed by construction), and the tests encode every handler's output
        checked (tests/support/in_memory_loop.py, tests/unit/test_front_door_records.py)."""
        encoded = []
        for name, record, *key in outbound:
            _, record_key, value, headers = encoded_record(
                self.codec, name, record, key[0] if key else None, checked=False
            )
            encoded.append((self.topic_of(name), record_key, value, headers))
        return encoded

    async def send_encoded(
        self, encoded: Sequence[tuple[str, bytes | None, bytes | None, list]]
    ) -> list[asyncio.Future]:
        producer = await self._started()
        sent = []
        for topic, key, value, headers in encoded:
            sent.append(await producer.send(topic, value=value, key=key, headers=headers))
            loop_metrics.produced(topic)
        return sent

    async def send_to(
        self,
        topic: str,
        partition: int | None,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> asyncio.Future:
        producer = await self._started()
        sent = await producer.send(
            topic, value=value, key=key, headers=headers, partition=partition
        )
        loop_metrics.produced(topic)
        return sent

    async def publish(self, outbound: Sequence[Outbound]) -> None:
        """Write every record and wait until the broker acknowledged all of them."""
        await asyncio.gather(*await self.send_encoded(self.encode(outbound)))

    async def publish_durably(self, outbound: Sequence[Outbound]) -> None:
        await self.deliver(self.encode(outbound))

    async def deliver(
        self, encoded: Sequence[tuple[str, bytes | None, bytes | None, list]]
    ) -> None:
        """Write and wait, retrying (same bytes, so the same event ids) while the broker is
        unavailable."""
        pause = 0.2
        failures = 0
        while True:
            try:
                await asyncio.gather(*await self.send_encoded(encoded))
                return
            except KafkaError as exc:
                failures += 1
                log.warning(
                    "broker unavailable; write retried",
                    error=repr(exc),
                    failures=failures,
                    retry_in_s=pause,
                )
                if failures % 5 == 0:
                    await self.reset()
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
