"""The fetch pace on the real broker: aiokafka's fetcher takes the terms set between polls.
With a busy wait far longer than the test, a record produced while the consumer is idle
still comes back at once (an idle fetch returns on the first record), and once records come
the fetcher is back on the busy terms."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.engine.fetch_pace import BUSY_MIN_BYTES, IDLE, FetchPace, FetchTerms

BUSY_WAIT_MS = 30_000  # a lone record on busy terms would wait this long


async def lone_record_round_trip(bootstrap: str) -> tuple[list[FetchTerms], float]:
    topic = f"pace-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        fetch_min_bytes=BUSY_MIN_BYTES,
        fetch_max_wait_ms=BUSY_WAIT_MS,
        request_timeout_ms=BUSY_WAIT_MS + 10_000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    try:
        pace = FetchPace(consumer, BUSY_WAIT_MS)
        seen = [pace.terms]
        # an empty poll: idle terms for the requests built from now on (a request already
        # parked at the broker keeps its terms, so the partition is assigned only now)
        seen.append(pace.after_poll(False))
        consumer.assign([TopicPartition(topic, 0)])
        for _ in range(5):  # idle polls, as the engine's loop makes them
            seen.append(pace.after_poll(any((await consumer.getmany(timeout_ms=200)).values())))
        await producer.send_and_wait(topic, b"lone", key=b"k")
        sent = time.monotonic()
        got: list = []
        while not got and time.monotonic() - sent < BUSY_WAIT_MS * 2 / 1000:
            batches = await consumer.getmany(timeout_ms=200)
            got = [m for messages in batches.values() for m in messages]
            seen.append(pace.after_poll(bool(got)))
        return seen, time.monotonic() - sent
    finally:
        await producer.stop()
        await consumer.stop()


def test_an_idle_fetch_returns_on_the_first_record_and_records_bring_the_busy_terms_back(
    kafka_bootstrap: str,
) -> None:
    seen, waited_s = asyncio.run(lone_record_round_trip(kafka_bootstrap))
    busy = FetchTerms(BUSY_MIN_BYTES, BUSY_WAIT_MS)
    assert seen[0] == busy and set(seen[1:7]) == {IDLE}
    assert seen[-1] == busy  # the poll that brought the record
    # on busy terms the request parked at the broker since the assignment would have held
    # the lone record until its 30 s were up; on idle terms it comes back with it
    assert waited_s < BUSY_WAIT_MS / 1000 / 3, waited_s
