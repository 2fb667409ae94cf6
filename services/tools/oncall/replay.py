"""Replaying a topic to its consumers, safely (the service layer of `boomerang replay`).

Two ways to re-deliver:

- **re-publish** the selected records to their topic (or another): same key, same bytes, so
  the same event ids, which every consumer deduplicates; headers say who replayed them,
  when, why and from where;
- **rewind** a stopped consumer group: commit earlier offsets so the group reads again.

Both start with a plan: how many records per partition and event type, and what each
consumer would do with them against its dedupe state (`replay_effects`). Nothing is written
unless the caller executes the plan.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from services.eventing.avro_codec import AvroCodec, CodecError
from services.eventing.topics import ALL_TOPICS, TopicSpec
from services.tools.oncall import replay_effects
from services.tools.oncall.audit_trail import stamp_headers
from services.tools.oncall.record_selection import RecordFacts, Selection
from services.tools.oncall.service_state import read_tables
from services.tools.oncall.topic_reader import offset_bounds, offsets_at, read_ranges

REPLAY_HEADER_PREFIX = "replay."
MAX_LISTED = 5000  # records listed one by one in a report (the counts cover all)


class ReplayRefused(RuntimeError):
    """The replay cannot be done as asked (e.g. the group still has members)."""


@dataclass(frozen=True)
class Candidate:
    facts: RecordFacts
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    name: str | None
    record: dict[str, Any] | None


@dataclass
class Plan:
    selection: Selection
    target_topic: str
    candidates: list[Candidate]
    prediction: replay_effects.EffectPrediction
    offsets: list[dict[str, int]] = field(default_factory=list)  # rewind only
    group: str | None = None

    def report(self) -> dict[str, Any]:
        by_partition = Counter(c.facts.partition for c in self.candidates)
        by_type = Counter(c.name or "(undecodable)" for c in self.candidates)
        report: dict[str, Any] = {
            "mode": "rewind" if self.group else "republish",
            "selection": self.selection.describe(),
            "target_topic": self.target_topic,
            "records": len(self.candidates),
            "by_partition": {str(p): n for p, n in sorted(by_partition.items())},
            "by_event_type": dict(sorted(by_type.items())),
            "effects": self.prediction.as_dict(),
            "new_effects": self.prediction.new_effects,
            "new_effect_records": {
                consumer: [_position(self.candidates[i]) for i in indexes[:MAX_LISTED]]
                for consumer, indexes in sorted(self.prediction.new_at.items())
            },
            "selected": [
                {
                    "partition": c.facts.partition,
                    "offset": c.facts.offset,
                    "timestamp_ms": c.facts.timestamp_ms,
                    "return_id": c.facts.return_id,
                    "event_type": c.facts.event_type,
                    "event_id": c.facts.event_id,
                }
                for c in self.candidates[:MAX_LISTED]
            ],
        }
        if self.group:
            report["group"] = self.group
            report["offsets"] = self.offsets
        return report


def _position(candidate: Candidate) -> dict[str, Any]:
    return {
        "partition": candidate.facts.partition,
        "offset": candidate.facts.offset,
        "return_id": candidate.facts.return_id,
        "event_type": candidate.facts.event_type,
    }


def topic_spec(name: str) -> TopicSpec:
    for spec in ALL_TOPICS:
        if spec.name == name:
            return spec
    raise KeyError(name)


def facts_of(message: Any, codec: AvroCodec) -> Candidate:
    try:
        decoded = codec.decode(message.value)
        name, record = decoded.name, decoded.record
        envelope = record.get("envelope") or {}
        return_id, event_id = envelope.get("return_id"), envelope.get("event_id")
    except (CodecError, TypeError):
        name = record = return_id = event_id = None
    facts = RecordFacts(
        message.topic,
        message.partition,
        message.offset,
        message.timestamp,
        return_id,
        name,
        event_id,
    )
    headers = tuple((k, bytes(v)) for k, v in message.headers or ())
    return Candidate(facts, message.key, message.value, headers, name, record)


async def offset_ranges(bootstrap: str, selection: Selection) -> dict[int, tuple[int, int]]:
    """[start, end) to read per partition. `--from-time` starts at the broker's answer (the
    first offset whose timestamp is at or after it: every earlier offset is older); the end
    is not narrowed by `--to-time`, because a later offset may carry an older timestamp
    (producers set them), so records are filtered by timestamp as they are read."""
    spec = topic_spec(selection.topic)
    starts, ends = await offset_bounds(bootstrap, spec.name, spec.partitions)
    from_time = None
    if selection.from_time_ms is not None:
        from_time = await offsets_at(bootstrap, spec.name, spec.partitions, selection.from_time_ms)
    ranges = {}
    for partition in range(spec.partitions):
        if not selection.partition_wanted(partition):
            continue
        start = selection.first_offset(partition, starts[partition])
        end = ends[partition]
        if from_time is not None:
            start = max(start, from_time[partition])
        if selection.to_offset is not None:
            end = min(end, selection.to_offset)
        end = min(end, selection.stop_at.get(partition, end))
        ranges[partition] = (start, max(start, end))
    return ranges


async def select(
    bootstrap: str,
    selection: Selection,
    codec: AvroCodec,
    on_record: Callable[[Any], None] | None = None,
) -> list[Candidate]:
    ranges = await offset_ranges(bootstrap, selection)
    messages = await read_ranges(bootstrap, selection.topic, ranges, on_record)
    candidates = [facts_of(m, codec) for m in messages]
    chosen = [
        c
        for c in candidates
        if selection.matches(c.facts) and (selection.include_replayed or not is_replay_copy(c))
    ]
    return sorted(chosen, key=lambda c: (c.facts.partition, c.facts.offset))


def is_replay_copy(candidate: Candidate) -> bool:
    """A record an earlier replay wrote: its original is in the topic too (same event id)."""
    return any(key == "replay.operation.id" for key, _ in candidate.headers)


async def predict(
    bootstrap: str,
    topic: str,
    candidates: list[Candidate],
    only_service: str | None = None,
) -> replay_effects.EffectPrediction:
    consumers = tuple(
        c
        for c in replay_effects.consumers_of(topic)
        if only_service is None or c.service == only_service
    )
    needed: dict[str, set[str]] = {}
    for consumer in consumers:
        needed.setdefault(consumer.service, set()).update(consumer.tables)
    tables = await read_tables(bootstrap, needed)
    rows = [(c.name, c.record, c.key) for c in candidates]
    return replay_effects.predict(topic, rows, tables, consumers)


async def plan_republish(
    bootstrap: str,
    selection: Selection,
    codec: AvroCodec,
    target_topic: str | None = None,
    on_record: Callable[[Any], None] | None = None,
) -> Plan:
    target = target_topic or selection.topic
    ends = {p: end for p, (_, end) in (await offset_ranges(bootstrap, selection)).items()}
    # the selection's end, fixed now: copies written to the same topic are never re-selected
    selection = replace(selection, stop_at=ends)
    candidates = await select(bootstrap, selection, codec, on_record)
    prediction = await predict(bootstrap, target, candidates)
    return Plan(selection, target, candidates, prediction)


def replay_headers(
    candidate: Candidate, operation_id: str, actor: str, reason: str, at_ms: int
) -> list[tuple[str, bytes]]:
    """The record's own headers (minus an earlier replay's) plus who/when/why/where from."""
    source = f"{candidate.facts.topic}/{candidate.facts.partition}/{candidate.facts.offset}"
    return stamp_headers(
        REPLAY_HEADER_PREFIX, candidate.headers, operation_id, actor, reason, at_ms, source
    )


@dataclass
class PublishResult:
    published: int
    interrupted: bool
    next_positions: dict[int, int]  # partition → first offset not yet re-published


async def republish(
    bootstrap: str,
    plan: Plan,
    headers_for: Callable[[Candidate], list[tuple[str, bytes]]],
    rate_per_s: float | None,
    stop: asyncio.Event,
    on_published: Callable[[Candidate], None] | None = None,
) -> PublishResult:
    """Send the plan's records in order (idempotent producer, acks=all), at most `rate_per_s`
    per second; stops between records when `stop` is set."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    published = 0
    next_positions: dict[int, int] = {}
    started = time.monotonic()
    try:
        for candidate in plan.candidates:
            if stop.is_set():
                break
            if rate_per_s:
                ahead = published / rate_per_s - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await producer.send_and_wait(
                plan.target_topic,
                candidate.value,
                key=candidate.key,
                headers=headers_for(candidate),
            )
            published += 1
            next_positions[candidate.facts.partition] = candidate.facts.offset + 1
            if on_published is not None:
                on_published(candidate)
    finally:
        await producer.stop()
    interrupted = published < len(plan.candidates)
    if interrupted:  # partitions not reached yet resume where the plan started them
        for candidate in plan.candidates[published:]:
            next_positions.setdefault(candidate.facts.partition, candidate.facts.offset)
    return PublishResult(published, interrupted, next_positions)


# ---------------------------------------------------------------- rewinding a group


async def group_members(bootstrap: str, group: str) -> tuple[str, int]:
    """(state, member count) of a consumer group."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_consumer_groups([group])
        _, _, state, _, _, members, *_ = described.groups[0]
        return state, len(members)
    finally:
        await admin.close()


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int | None]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        spec = topic_spec(topic)
        tps = [TopicPartition(topic, p) for p in range(spec.partitions)]
        offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
        found = {tp.partition: offsets[tp].offset for tp in tps if tp in offsets}
        return {p: (o if o >= 0 else None) for p, o in found.items()}
    finally:
        await admin.close()


async def plan_rewind(
    bootstrap: str,
    selection: Selection,
    service: str,
    codec: AvroCodec,
    on_record: Callable[[Any], None] | None = None,
) -> Plan:
    """Targets per partition (the selection's start) vs the group's committed offsets; the
    records between them are what the group would read again."""
    group = f"boomerang-{service}"
    if not any(c.service == service for c in replay_effects.consumers_of(selection.topic)):
        raise ReplayRefused(f"{service} does not consume {selection.topic}")
    state, members = await group_members(bootstrap, group)
    if members:
        raise ReplayRefused(
            f"group {group} is {state} with {members} member(s): stop {service} first "
            "(a running consumer would overwrite the rewound offsets)"
        )
    ranges = await offset_ranges(bootstrap, selection)
    committed = await committed_offsets(bootstrap, group, selection.topic)
    offsets = []
    redelivered: dict[int, tuple[int, int]] = {}
    for partition, (target, end) in sorted(ranges.items()):
        current = committed.get(partition)
        if current is not None and target > current:
            raise ReplayRefused(
                f"partition {partition}: target {target} is after the committed offset "
                f"{current}; a rewind never skips records"
            )
        current_or_end = end if current is None else current
        offsets.append(
            {
                "partition": partition,
                "current": -1 if current is None else current,
                "target": target,
                "redelivered": max(0, current_or_end - target),
            }
        )
        redelivered[partition] = (target, max(target, current_or_end))
    messages = await read_ranges(bootstrap, selection.topic, redelivered, on_record)
    candidates = sorted(
        (facts_of(m, codec) for m in messages), key=lambda c: (c.facts.partition, c.facts.offset)
    )
    prediction = await predict(bootstrap, selection.topic, candidates, only_service=service)
    return Plan(selection, selection.topic, candidates, prediction, offsets, group)


async def rewind(bootstrap: str, plan: Plan, operation_id: str) -> None:
    """Commit the plan's targets for its (still stopped) group."""
    assert plan.group is not None
    _, members = await group_members(bootstrap, plan.group)
    if members:
        raise ReplayRefused(f"group {plan.group} gained {members} member(s); nothing committed")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=plan.group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        targets = {
            TopicPartition(plan.target_topic, row["partition"]): OffsetAndMetadata(
                row["target"], f"boomerang replay {operation_id}"
            )
            for row in plan.offsets
        }
        consumer.assign(list(targets))
        await consumer.commit(targets)
    finally:
        await consumer.stop()
