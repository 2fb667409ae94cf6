"""The front door's measure of the coordinator's backlog on the real broker
(services/returns/coordinator_backlog.py): how long the oldest record the group has not
committed has waited, 0 once it committed everything, None when the broker cannot be asked."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from services.engine.handled_signal import HandledPositions, handled_group
from services.eventing.event_publisher import producer_settings
from services.returns.coordinator_backlog import CoordinatorBacklog
from services.tools.local_stack.stack import free_port

pytestmark = pytest.mark.integration
PARTITIONS = 2


async def _create(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()


async def _write(bootstrap: str, topic: str, partition: int, age_s: float) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings())
    await producer.start()
    try:
        at_ms = int((time.time() - age_s) * 1000)
        await producer.send_and_wait(topic, b"r", partition=partition, timestamp_ms=at_ms)
    finally:
        await producer.stop()


async def _commit_all(bootstrap: str, topic: str, group: str) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit({tp: OffsetAndMetadata(ends[tp], "") for tp in tps})
    finally:
        await consumer.stop()


async def _measured(backlog: CoordinatorBacklog, within_s: float = 60) -> None:
    """Refresh until the broker answers: a fresh broker has no offsets topic until a group
    first asks (meanwhile the wait is unknown, as the front door sees it then)."""
    deadline = time.monotonic() + within_s
    await backlog.refresh()
    while backlog.waiting_s is None and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        await backlog.refresh()


def test_the_wait_is_the_oldest_uncommitted_records_age_and_zero_once_all_is_committed(
    kafka_bootstrap,
):
    """A front door that saw the records appear counts from then (its history of partition
    ends: nothing fetched); one that started after them reads their broker timestamps."""

    async def scenario() -> None:
        topic, group = f"backlog-{uuid.uuid4().hex[:8]}", f"group-{uuid.uuid4().hex[:8]}"
        await _create(kafka_bootstrap, topic)
        watching = CoordinatorBacklog(kafka_bootstrap, topic, PARTITIONS, group)
        started_later = CoordinatorBacklog(kafka_bootstrap, topic, PARTITIONS, group)
        try:
            await _measured(watching)
            assert watching.waiting_s == 0  # an empty topic: nothing waits
            written_at = time.monotonic()
            await _write(kafka_bootstrap, topic, 0, age_s=5)
            await _write(kafka_bootstrap, topic, 1, age_s=120)  # the older one counts
            await _measured(started_later)
            assert started_later.waiting_s is not None
            assert 115 <= started_later.waiting_s <= 180
            await _measured(watching)
            first = watching.waiting_s
            assert first is not None and first <= time.monotonic() - written_at + 1.5
            await asyncio.sleep(2.0)
            await _measured(watching)
            assert watching.waiting_s is not None and watching.waiting_s >= first + 1.5
            await _commit_all(kafka_bootstrap, topic, group)
            await _measured(watching)
            await _measured(started_later)
            assert watching.waiting_s == 0 and started_later.waiting_s == 0
        finally:
            await watching.stop()
            await started_later.stop()

    asyncio.run(scenario())


def test_a_broker_that_cannot_be_asked_leaves_the_wait_unknown():
    async def scenario() -> None:
        nowhere = f"127.0.0.1:{free_port()}"
        backlog = CoordinatorBacklog(nowhere, "boomerang.returns.events", 4, "g")
        backlog.waiting_s = 3.0
        await asyncio.wait_for(backlog.refresh(), timeout=120)
        assert backlog.waiting_s is None
        await backlog.stop()

    asyncio.run(scenario())


def test_what_the_coordinator_handled_counts_before_what_it_committed(kafka_bootstrap):
    """The handled group (engine/handled_signal.py) is ahead of the committed offsets, which
    wait for the state's changelog: the wait is measured from it."""

    async def scenario() -> None:
        topic, group = f"backlog-{uuid.uuid4().hex[:8]}", f"group-{uuid.uuid4().hex[:8]}"
        await _create(kafka_bootstrap, topic)
        await _write(kafka_bootstrap, topic, 0, age_s=300)
        await _write(kafka_bootstrap, topic, 1, age_s=300)
        signal = HandledPositions(kafka_bootstrap, group, "test-handled")
        backlog = CoordinatorBacklog(
            kafka_bootstrap, topic, PARTITIONS, group, handled_group(group)
        )
        try:
            await _measured(backlog)
            assert backlog.waiting_s is not None and backlog.waiting_s >= 295  # nothing handled
            await signal.commit({TopicPartition(topic, 0): 1})
            await _measured(backlog)
            assert backlog.waiting_s is not None and backlog.waiting_s >= 295  # partition 1 waits
            await signal.commit({TopicPartition(topic, 0): 1, TopicPartition(topic, 1): 1})
            await _measured(backlog)
            assert backlog.waiting_s == 0  # handled, though nothing is committed
        finally:
            await signal.stop()
            await backlog.stop()

    asyncio.run(scenario())
