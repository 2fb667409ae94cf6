"""A GlobalTable on the real broker: every partition of a compacted topic read whole, a key
written after the first read found by catching up, an unreadable record or a policy that
is not the one its digest names skipped and counted (the coordinator's policy snapshots,
services/coordinator/app.py); a broker that cannot be reached is a transient failure."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from functools import partial

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.coordinator.app import policy_json_of
from services.engine.global_table import GlobalTable, GlobalTableUnavailable
from services.eventing.envelope import new_envelope
from services.eventing.event_publisher import producer_settings
from services.eventing.handler_contract import TransientFailure
from services.tools.local_stack.stack import free_port

PARTITIONS = 3


def digest(policy_json: str) -> str:
    return hashlib.sha256(policy_json.encode()).hexdigest()


def snapshot(codec, policy_json: str, named: str | None = None) -> tuple[str, bytes]:
    """(key, value) of the policy's snapshot; `named`: a digest that is not its own."""
    key = named or digest(policy_json)
    record = {
        "envelope": new_envelope("PolicySnapshotPublished", "RMA-GT-1", "integration-test"),
        "policy_digest": key,
        "policy_version": "DE/market:default@v1",
        "policy_json": policy_json,
    }
    return key, codec.encode("PolicySnapshotPublished", record)


async def _create(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        config = {"cleanup.policy": "compact"}
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1, topic_configs=config)])
    finally:
        await admin.close()


async def _write(bootstrap: str, topic: str, records: list[tuple[int, tuple[str, bytes]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings())
    await producer.start()
    try:
        for partition, (key, value) in records:
            await producer.send_and_wait(topic, value, key=key.encode(), partition=partition)
    finally:
        await producer.stop()


def test_every_partition_is_read_and_a_key_written_later_is_found_by_catching_up(
    kafka_bootstrap, codec
):
    topic = f"it-global-table-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        await _create(kafka_bootstrap, topic)
        policies = [f'{{"p":{p}}}' for p in range(PARTITIONS)]
        await _write(
            kafka_bootstrap,
            topic,
            [(p, snapshot(codec, policy)) for p, policy in enumerate(policies)]
            + [(1, ("d-bad", b"not an avro frame"))]
            + [(2, snapshot(codec, '{"forged":1}', named=digest('{"p":9}')))],
        )
        table = GlobalTable(kafka_bootstrap, topic, PARTITIONS, partial(policy_json_of, codec))
        try:
            assert [await table.get(digest(policy)) for policy in policies] == policies
            # not a snapshot, and one whose policy is not the one its digest names: skipped
            assert await table.get("d-bad") is None and table.unreadable == 2
            assert await table.get(digest('{"p":9}')) is None
            assert await table.get(digest("{}")) is None  # read to the end: not there
            await _write(kafka_bootstrap, topic, [(2, snapshot(codec, "{}"))])
            assert await table.get(digest("{}")) == "{}"
            # concurrent misses for one key catch up once, and all find it
            await _write(kafka_bootstrap, topic, [(0, snapshot(codec, "[]"))])
            both = await asyncio.gather(table.get(digest("[]")), table.get(digest("[]")))
            assert both == ["[]", "[]"]
            assert table.unreadable == 2  # the bad records were read once
        finally:
            await table.stop()

    asyncio.run(scenario())


def test_a_broker_that_cannot_be_reached_is_a_transient_failure_not_a_dead_letter():
    async def scenario() -> None:
        nowhere = f"127.0.0.1:{free_port()}"
        table = GlobalTable(nowhere, "boomerang.policy.snapshots", 1, lambda value: value)
        with pytest.raises(GlobalTableUnavailable) as failed:
            await table.get("d-1")
        assert isinstance(failed.value, TransientFailure)

    asyncio.run(scenario())


class CountedCatchUps(GlobalTable):
    """A GlobalTable that counts its full catch-ups (the real one underneath)."""

    catch_ups = 0

    async def _catch_up(self) -> None:
        self.catch_ups += 1
        await super()._catch_up()


def test_readers_waiting_behind_a_catch_up_share_the_next_one_and_see_what_was_written(
    kafka_bootstrap,
):
    """The risk service's decisions read every key's windows caught up: 200 readers at once
    are served by two catch-ups (the one running and the next), not by one each, and each
    sees every value written before it asked."""
    topic = f"it-global-table-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        await _create(kafka_bootstrap, topic)
        table = CountedCatchUps(kafka_bootstrap, topic, PARTITIONS, bytes.decode)
        try:
            await _write(kafka_bootstrap, topic, [(p, (f"k{p}", b"v1")) for p in range(3)])
            seen = await asyncio.gather(*(table.caught_up(0.0) for _ in range(200)))
            assert all(values == {"k0": "v1", "k1": "v1", "k2": "v1"} for values in seen)
            assert table.catch_ups <= 2
            await _write(kafka_bootstrap, topic, [(1, ("k1", b"v2"))])
            assert (await table.caught_up(0.0))["k1"] == "v2"  # asked after: caught up again
            before = table.catch_ups
            await table.caught_up(60.0)  # a catch-up within the last minute serves it
            assert table.catch_ups == before
        finally:
            await table.stop()

    asyncio.run(scenario())
