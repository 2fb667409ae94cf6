"""`boomerang topics migrate`: take every topic partitioned like the services' inputs from
its partition count to another (4 → 12), on a drained and stopped deployment.

A record's partition comes from its key (murmur2 modulo the count), so a new count moves
keys: partitions added in place would send a return's next events to another partition than
its earlier ones and its state. The migration rewrites each topic instead:

1. **Check** that no Boomerang consumer group has a member (every service is stopped) or
   lag on these topics (everything published was handled and its state checkpointed: a
   service that stops does both). Refused otherwise, naming the group and topic.
2. **Plan**: each group's offsets on these topics are written to a plan file before
   anything is deleted (a run after a crash resumes from it and the staging topics).
3. **Per topic**: copy it into `<topic>.migrating` (made with the new count), each record on
   its key's new partition, in order, with its timestamp and headers; a changelog record
   goes where the key that wrote it lands now (its `boomerang.applied` stamp names it when
   it is not the entry's own key), and the stamp's offsets, positions in the old topics, are
   dropped (nothing before the committed offsets is delivered again). Then the topic is
   deleted, made again with the new count and the staging copy copied back partition for
   partition; each group that had offsets on it commits the new ends; the staging topic is
   deleted. A count of records checks each copy.

The coordinator's archive files notice the new count and read the archive topic again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from services.engine.handled_signal import HANDLED_GROUP_SUFFIX
from services.engine.state_store import APPLIED_HEADER
from services.eventing.topic_bootstrap import new_topic
from services.eventing.topics import (
    SAGA_CHANGELOG,
    SERVICE_CHANGELOGS,
    STREAMS,
    TopicSpec,
    dead_letter_topic,
)
from services.tools.oncall.replay import group_members

STAGING_SUFFIX = ".migrating"
GROUP_PREFIX = "boomerang-"
CHANGELOGS = frozenset(spec.name for spec in (SAGA_CHANGELOG, *SERVICE_CHANGELOGS))
Progress = Callable[[str], None]


def partitioned_topics() -> tuple[TopicSpec, ...]:
    """The topics partitioned like the inputs: the streams, their dead letters, changelogs."""
    return (*STREAMS, *(dead_letter_topic(s) for s in STREAMS), SAGA_CHANGELOG, *SERVICE_CHANGELOGS)


# -- where a record goes (pure) ------------------------------------------------------------


def new_partition(routing_key: bytes | None, old_partition: int, partitions: int) -> int:
    """Kafka's default partitioner for a keyed record; a record without a key keeps its
    partition number (folded into the new count)."""
    if routing_key is None:
        return old_partition % partitions
    return (murmur2(routing_key) & 0x7FFFFFFF) % partitions


def changelog_routing(key: bytes, headers: Sequence[tuple[str, bytes]]) -> tuple[bytes, list]:
    """A changelog record's routing key (the key of the input record that wrote it, which
    its partition follows) and its headers without the applied stamp."""
    writer: str | None = None
    kept = []
    for name, value in headers:
        if name == APPLIED_HEADER:
            writer = orjson.loads(value).get("key")
        else:
            kept.append((name, value))
    if writer is None:
        writer = orjson.loads(key)
    return str(writer).encode("utf-8"), kept


@dataclass
class DrainProblem:
    group: str
    topic: str
    detail: str


def drain_problems(
    members: dict[str, int],
    committed: dict[str, dict[tuple[str, int], int]],
    ends: dict[tuple[str, int], int],
) -> list[DrainProblem]:
    """Why the deployment is not ready to migrate: a group with members, or a partition a
    group has offsets on whose end is past its committed offset."""
    problems = [
        DrainProblem(group, "*", f"{count} member(s): stop every instance of the service")
        for group, count in sorted(members.items())
        if count
    ]
    for group, offsets in sorted(committed.items()):
        lag: dict[str, int] = {}
        for (topic, partition), offset in offsets.items():
            behind = ends.get((topic, partition), 0) - offset
            if behind > 0:
                lag[topic] = lag.get(topic, 0) + behind
        problems += [
            DrainProblem(
                group,
                topic,
                f"{n} record(s) not handled: run the service until its "
                "lag is 0 with nothing new coming in, then stop it",
            )
            for topic, n in sorted(lag.items())
        ]
    return problems


# -- the plan file -----------------------------------------------------------------------


@dataclass
class MigrationPlan:
    partitions: int
    # topic → the groups that had offsets on it (they commit the new ends after the copy)
    groups_by_topic: dict[str, list[str]] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=1))

    @classmethod
    def load(cls, path: Path) -> MigrationPlan | None:
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))


# -- the migration (adapter) --------------------------------------------------------------


@dataclass
class MigrationReport:
    partitions: int
    migrated: dict[str, int] = field(default_factory=dict)  # topic → records copied
    to_migrate: list[str] = field(default_factory=list)  # not yet at the new count
    already: list[str] = field(default_factory=list)  # at the new count before this run
    missing: list[str] = field(default_factory=list)
    problems: list[DrainProblem] = field(default_factory=list)
    seconds: float = 0.0


async def migrate(
    bootstrap: str,
    partitions: int,
    plan_file: Path,
    progress: Progress = print,
    check_only: bool = False,
) -> MigrationReport:
    started = time.monotonic()
    report = MigrationReport(partitions)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        counts = await _partition_counts(admin)
        plan = MigrationPlan.load(plan_file)
        if plan is not None and plan.partitions != partitions:
            raise MigrationRefused(
                f"{plan_file} is a migration to {plan.partitions} partitions: finish it "
                "(same --partitions) or remove the file"
            )
        to_do = []
        for spec in partitioned_topics():
            staged = spec.name + STAGING_SUFFIX in counts
            if spec.name not in counts and not staged:
                report.missing.append(spec.name)
            elif counts.get(spec.name) == partitions and not staged:
                report.already.append(spec.name)
            else:
                to_do.append(replace(spec, partitions=partitions))
        report.to_migrate = [spec.name for spec in to_do]
        if plan is None:
            report.problems = await _drain_problems(admin, bootstrap, [s.name for s in to_do])
            if report.problems or check_only or not to_do:
                return report
            plan = MigrationPlan(partitions, await _groups_by_topic(admin, to_do))
            plan.save(plan_file)
            progress(f"plan written to {plan_file}")
        elif check_only:
            return report
        for spec in to_do:
            progress(f"{spec.name}: {counts.get(spec.name, '?')} → {partitions} partitions")
            report.migrated[spec.name] = await _migrate_topic(
                admin,
                bootstrap,
                spec,
                brokers,
                counts,
                plan.groups_by_topic.get(spec.name, []),
                progress,
            )
            plan.done.append(spec.name)
            plan.save(plan_file)
        plan_file.unlink()
        progress(f"done: {len(report.migrated)} topic(s); {plan_file} removed")
        return report
    finally:
        report.seconds = round(time.monotonic() - started, 1)
        await admin.close()


class MigrationRefused(RuntimeError):
    pass


async def _partition_counts(admin: AIOKafkaAdminClient) -> dict[str, int]:
    names = await admin.list_topics()
    described = await admin.describe_topics(list(names))
    return {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}


async def _boomerang_groups(admin: AIOKafkaAdminClient) -> list[str]:
    return sorted(
        group[0]
        for group in await admin.list_consumer_groups()
        if group[0].startswith(GROUP_PREFIX)
    )


async def _drain_problems(
    admin: AIOKafkaAdminClient, bootstrap: str, topics: list[str]
) -> list[DrainProblem]:
    groups = await _boomerang_groups(admin)
    members = {group: (await group_members(bootstrap, group))[1] for group in groups}
    committed = {}
    for group in groups:
        if group.endswith(HANDLED_GROUP_SUFFIX):  # a signal only, a second behind at most
            continue
        offsets = await admin.list_consumer_group_offsets(group)
        committed[group] = {
            (tp.topic, tp.partition): meta.offset
            for tp, meta in offsets.items()
            if tp.topic in topics and meta.offset >= 0
        }
    wanted = sorted({tp for offsets in committed.values() for tp in offsets})
    ends = await _end_offsets(bootstrap, [TopicPartition(t, p) for t, p in wanted])
    return drain_problems(
        members, committed, {(tp.topic, tp.partition): n for tp, n in ends.items()}
    )


async def _groups_by_topic(
    admin: AIOKafkaAdminClient, specs: list[TopicSpec]
) -> dict[str, list[str]]:
    names = {spec.name for spec in specs}
    found: dict[str, set[str]] = {}
    for group in await _boomerang_groups(admin):
        for tp in await admin.list_consumer_group_offsets(group):
            if tp.topic in names:
                found.setdefault(tp.topic, set()).add(group)
    return {topic: sorted(groups) for topic, groups in sorted(found.items())}


async def _migrate_topic(
    admin: AIOKafkaAdminClient,
    bootstrap: str,
    spec: TopicSpec,
    brokers: int,
    counts: dict[str, int],
    groups: list[str],
    progress: Progress,
) -> int:
    staging = replace(spec, name=spec.name + STAGING_SUFFIX)
    staged: int | None = None
    old_count = counts.get(spec.name)
    if old_count is not None and old_count != spec.partitions:  # the original is still there
        await _delete(admin, [staging.name])
        await _create(admin, staging, brokers)
        read = await _copy(bootstrap, spec.name, old_count, staging.name, spec, progress, True)
        staged = await _count(bootstrap, staging.name, spec.partitions)
        if staged != read:
            raise MigrationRefused(f"{staging.name} holds {staged} records of {read} read")
    # the staging copy is complete: (re)make the topic and copy it back
    await _delete(admin, [spec.name])
    await _create(admin, spec, brokers)
    if staged is None:  # resuming: count what an earlier run staged
        staged = await _count(bootstrap, staging.name, spec.partitions)
    copied = await _copy(bootstrap, staging.name, spec.partitions, spec.name, spec, progress, False)
    if copied != staged or await _count(bootstrap, spec.name, spec.partitions) != staged:
        raise MigrationRefused(f"{spec.name}: copied {copied} of {staged} staged records")
    await _commit_ends(bootstrap, spec, groups)
    await _delete(admin, [staging.name])
    return copied


async def _copy(
    bootstrap: str,
    source: str,
    source_partitions: int,
    target: str,
    spec: TopicSpec,
    progress: Progress,
    rekey: bool,
) -> int:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=20,
        max_request_size=2_000_000,
        enable_idempotence=True,
    )
    await producer.start()
    copied = 0
    last_shown = time.monotonic()
    try:
        pending = []
        async for message in _read_all(bootstrap, source, source_partitions):
            headers = list(message.headers or ())
            if not rekey:
                partition = message.partition
            elif spec.name in CHANGELOGS and message.key is not None:
                routing, headers = changelog_routing(message.key, headers)
                partition = new_partition(routing, message.partition, spec.partitions)
            else:
                partition = new_partition(message.key, message.partition, spec.partitions)
            pending.append(
                await producer.send(
                    target,
                    message.value,
                    key=message.key,
                    partition=partition,
                    timestamp_ms=message.timestamp,
                    headers=headers,
                )
            )
            copied += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
            if time.monotonic() - last_shown >= 5:
                progress(f"  {source} → {target}: {copied} records")
                last_shown = time.monotonic()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    progress(f"  {source} → {target}: {copied} records")
    return copied


async def _read_all(bootstrap: str, topic: str, partitions: int) -> AsyncIterator[Any]:
    """Every record of `topic`'s `partitions` partitions (the caller read the count from the
    admin client: a fresh consumer's metadata does not know the topic yet)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4_000_000,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        if remaining:
            await consumer.seek_to_beginning(*remaining)
        # partition by partition: a key's records keep their order
        for tp in sorted(remaining, key=lambda tp: tp.partition):
            consumer.pause(*[other for other in tps if other != tp])
            consumer.resume(tp)
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
                for message in batch.get(tp, []):
                    if message.offset < ends[tp]:
                        yield message
    finally:
        await consumer.stop()


async def _count(bootstrap: str, topic: str, partitions: int) -> int:
    count = 0
    async for _ in _read_all(bootstrap, topic, partitions):
        count += 1
    return count


async def _end_offsets(bootstrap: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    if not tps:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.end_offsets(tps)
    finally:
        await consumer.stop()


async def _commit_ends(bootstrap: str, spec: TopicSpec, groups: list[str]) -> None:
    """Each group that consumed the topic starts at its new end (it had handled everything)."""
    tps = [TopicPartition(spec.name, p) for p in range(spec.partitions)]
    ends = await _end_offsets(bootstrap, tps)
    for group in groups:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign(tps)
            await consumer.commit({tp: ends[tp] for tp in tps})
        finally:
            await consumer.stop()


async def _create(admin: AIOKafkaAdminClient, spec: TopicSpec, brokers: int) -> None:
    """Create `spec`, waiting out a deletion of the same name still in progress."""
    deadline = time.monotonic() + 120
    while True:
        response = await admin.create_topics([new_topic(spec, brokers)])
        ((_name, error_code, *rest),) = response.topic_errors
        if error_code == 0:
            break
        if time.monotonic() > deadline:
            raise MigrationRefused(f"creating {spec.name} failed: error {error_code} {rest}")
        await asyncio.sleep(1)
    while (await _partition_counts(admin)).get(spec.name) != spec.partitions:
        await asyncio.sleep(0.5)


async def _delete(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    listed = set(await admin.list_topics())
    present = [n for n in names if n in listed]
    if not present:
        return
    with contextlib.suppress(KafkaError):  # gone already, or going: waited for below
        await admin.delete_topics(present)
    deadline = time.monotonic() + 120
    while set(present) & set(await admin.list_topics()):
        if time.monotonic() > deadline:
            raise MigrationRefused(f"{present} still listed 120 s after their deletion")
        await asyncio.sleep(0.5)
