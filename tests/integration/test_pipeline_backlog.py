"""The front door's admission measures on the real broker (services/returns/pipeline_backlog.py):
how long the oldest entry record the coordinator has not handled has waited, and how long a
return taken now would wait in the groups' queues; 0 once all is handled, None when the
broker cannot be asked."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from services.decisions.admission import Backlog
from services.decisions.pipeline_wait import MIN_RATE, SMOOTHING_MS
from services.engine.handled_signal import HandledPositions
from services.eventing.event_publisher import producer_settings
from services.returns.pipeline_backlog import PipelineBacklog
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


def _backlog(bootstrap: str, topic: str, service: str) -> PipelineBacklog:
    return PipelineBacklog(
        bootstrap, topic, PARTITIONS, path_topics={service: (topic,)}, entry_service=service
    )


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


async def _measured(backlog: PipelineBacklog, within_s: float = 60) -> None:
    """Refresh until the broker answers: a fresh broker has no offsets topic until a group
    first asks (meanwhile the wait is unknown, as the front door sees it then)."""
    deadline = time.monotonic() + within_s
    await backlog.refresh()
    while backlog.reading.waiting_s is None and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        await backlog.refresh()


def test_the_wait_is_the_oldest_uncommitted_records_age_and_zero_once_all_is_committed(
    kafka_bootstrap,
):
    """A front door that saw the records appear counts from then (its history of partition
    ends: nothing fetched); one that started after them reads their broker timestamps."""

    async def scenario() -> None:
        topic, service = f"backlog-{uuid.uuid4().hex[:8]}", f"svc-{uuid.uuid4().hex[:8]}"
        group = f"boomerang-{service}"
        await _create(kafka_bootstrap, topic)
        watching = _backlog(kafka_bootstrap, topic, service)
        started_later = _backlog(kafka_bootstrap, topic, service)
        try:
            await _measured(watching)
            assert watching.reading.waiting_s == 0  # an empty topic: nothing waits
            written_at = time.monotonic()
            await _write(kafka_bootstrap, topic, 0, age_s=5)
            await _write(kafka_bootstrap, topic, 1, age_s=120)  # the older one counts
            await _measured(started_later)
            assert started_later.reading.waiting_s is not None
            assert 115 <= started_later.reading.waiting_s <= 180
            await _measured(watching)
            first = watching.reading.waiting_s
            assert first is not None and first <= time.monotonic() - written_at + 1.5
            await asyncio.sleep(2.0)
            await _measured(watching)
            assert (
                watching.reading.waiting_s is not None and watching.reading.waiting_s >= first + 1.5
            )
            await _commit_all(kafka_bootstrap, topic, group)
            await _measured(watching)
            await _measured(started_later)
            assert watching.reading.waiting_s == 0 and started_later.reading.waiting_s == 0
        finally:
            await watching.stop()
            await started_later.stop()

    asyncio.run(scenario())


def test_a_broker_that_cannot_be_asked_leaves_the_wait_unknown():
    async def scenario() -> None:
        nowhere = f"127.0.0.1:{free_port()}"
        backlog = PipelineBacklog(nowhere, "boomerang.returns.events", 4)
        backlog.reading = Backlog(3.0, 4.0)
        await asyncio.wait_for(backlog.refresh(), timeout=120)
        assert backlog.reading == Backlog(None, None)
        await backlog.stop()

    asyncio.run(scenario())


def test_what_the_coordinator_handled_counts_before_what_it_committed(kafka_bootstrap):
    """The handled group (engine/handled_signal.py) is ahead of the committed offsets, which
    wait for the state's changelog: the wait is measured from it."""

    async def scenario() -> None:
        topic, service = f"backlog-{uuid.uuid4().hex[:8]}", f"svc-{uuid.uuid4().hex[:8]}"
        group = f"boomerang-{service}"
        await _create(kafka_bootstrap, topic)
        await _write(kafka_bootstrap, topic, 0, age_s=300)
        await _write(kafka_bootstrap, topic, 1, age_s=300)
        signal = HandledPositions(kafka_bootstrap, group, "test-handled")
        backlog = _backlog(kafka_bootstrap, topic, service)
        try:
            await _measured(backlog)
            assert (
                backlog.reading.waiting_s is not None and backlog.reading.waiting_s >= 295
            )  # nothing handled
            await signal.commit({TopicPartition(topic, 0): 1})
            await _measured(backlog)
            assert (
                backlog.reading.waiting_s is not None and backlog.reading.waiting_s >= 295
            )  # partition 1 waits
            await signal.commit({TopicPartition(topic, 0): 1, TopicPartition(topic, 1): 1})
            await _measured(backlog)
            assert backlog.reading.waiting_s == 0  # handled, though nothing is committed
        finally:
            await signal.stop()
            await backlog.stop()

    asyncio.run(scenario())


def test_the_queues_wait_grows_with_what_a_group_has_not_handled_and_ends_at_zero(
    kafka_bootstrap,
):
    """A group's queued records over the rate it handles them (at least MIN_RATE): records
    written and not handled make a wait; handled (the signal), none. Admission reads the
    mean of the last SMOOTHING_MS of samples."""

    async def scenario() -> None:
        topic, service = f"backlog-{uuid.uuid4().hex[:8]}", f"svc-{uuid.uuid4().hex[:8]}"
        group = f"boomerang-{service}"
        await _create(kafka_bootstrap, topic)
        signal = HandledPositions(kafka_bootstrap, group, "test-handled")
        backlog = _backlog(kafka_bootstrap, topic, service)
        try:
            await signal.commit({TopicPartition(topic, p): 0 for p in range(PARTITIONS)})
            await _measured(backlog)
            assert backlog.reading.pipeline_wait_s == 0
            for _ in range(10):
                await _write(kafka_bootstrap, topic, 0, age_s=0)
            await _measured(backlog)
            await asyncio.sleep(1.2)  # records newer than the signal's lag are not queued yet
            await _measured(backlog)
            assert backlog.by_part == {f"{service}:{topic}": pytest.approx(10 / MIN_RATE)}
            # admission reads the mean of the samples of the last SMOOTHING_MS
            samples = [wait for _, wait in backlog.recent_waits.values]
            assert samples[-1] == pytest.approx(10 / MIN_RATE)
            assert backlog.reading.pipeline_wait_s == pytest.approx(sum(samples) / len(samples))
            await signal.commit({TopicPartition(topic, 0): 10})
            await _measured(backlog)
            assert backlog.by_part == {f"{service}:{topic}": 0.0}
            await asyncio.sleep(SMOOTHING_MS / 1000)  # the queued sample leaves the mean
            await _measured(backlog)
            assert backlog.reading.pipeline_wait_s == 0
        finally:
            await signal.stop()
            await backlog.stop()

    asyncio.run(scenario())
