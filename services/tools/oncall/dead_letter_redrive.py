"""Redriving dead letters to their topic after a fix, and purging them (service layer).

A redriven record is the dead letter's key and bytes on its original topic, with its `dlq.*`
headers kept: if it fails again, the consumer's dead-letter headers raise `dlq.attempt` and
it lands back in the DLQ (attempt 2, 3, ...). Redrive is a person's act, never automatic, so
a record cannot loop. A letter already redriven (the audit trail says so) is skipped.

Kafka cannot delete one record: a purge deletes a DLQ partition's records before an offset
(all of them, or those older than a time), and the audit event keeps what was purged.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from services.eventing.avro_codec import AvroCodec, CodecError
from services.tools.oncall import replay_effects
from services.tools.oncall.audit_trail import stamp_headers
from services.tools.oncall.dead_letter_report import DeadLetter
from services.tools.oncall.service_state import read_tables

REDRIVE = "dlq.redrive"
PURGE = "dlq.purge"


def position(letter: DeadLetter) -> str:
    return f"{letter.topic}/{letter.partition}/{letter.offset}"


def already_redriven(trail: list[dict[str, Any]]) -> set[str]:
    """Dead-letter positions that a completed (or interrupted) redrive re-published."""
    return {
        done
        for event in trail
        if event.get("operation") == REDRIVE
        for done in (event.get("result") or {}).get("redriven", [])
    }


def choose(
    letters: list[DeadLetter],
    reasons: set[str],
    positions: set[str],
    skip: set[str],
) -> tuple[list[DeadLetter], list[DeadLetter]]:
    """(to redrive, skipped because redriven before), oldest first per topic/partition."""
    wanted = [
        letter
        for letter in letters
        if (not reasons or letter.reason in reasons)
        and (not positions or position(letter) in positions)
    ]
    wanted.sort(key=lambda letter: (letter.topic, letter.partition, letter.offset))
    return (
        [letter for letter in wanted if position(letter) not in skip],
        [letter for letter in wanted if position(letter) in skip],
    )


@dataclass
class RedrivePlan:
    letters: list[DeadLetter]
    skipped: list[DeadLetter]
    prediction: dict[str, dict[str, dict[str, int]]]  # original topic → consumer → verdicts

    def report(self) -> dict[str, Any]:
        groups = Counter((letter.original_topic, letter.reason) for letter in self.letters)
        return {
            "letters": len(self.letters),
            "positions": [position(letter) for letter in self.letters],
            "skipped_already_redriven": [position(letter) for letter in self.skipped],
            "by_topic_and_reason": [
                {"original_topic": topic, "reason": reason, "count": count}
                for (topic, reason), count in groups.most_common()
            ],
            "max_attempt": max((letter.attempt for letter in self.letters), default=0),
            "effects": self.prediction,
            "new_effects": sum(
                verdicts.get(replay_effects.NEW, 0)
                for consumers in self.prediction.values()
                for verdicts in consumers.values()
            ),
        }


async def plan_redrive(
    bootstrap: str, letters: list[DeadLetter], skipped: list[DeadLetter], codec: AvroCodec
) -> RedrivePlan:
    """What each consumer of the original topics would do with the letters now."""
    by_topic: dict[str, list[DeadLetter]] = {}
    for letter in letters:
        by_topic.setdefault(letter.original_topic, []).append(letter)
    prediction = {}
    for topic, members in sorted(by_topic.items()):
        rows: list[tuple[str | None, dict[str, Any] | None, bytes | None]] = []
        for letter in members:
            try:
                decoded = codec.decode(letter.value or b"")
                rows.append((decoded.name, decoded.record, letter.key))
            except CodecError:
                rows.append((None, None, letter.key))
        tables = await read_tables(bootstrap, replay_effects.tables_needed(topic))
        prediction[topic] = replay_effects.predict(topic, rows, tables).as_dict()
    return RedrivePlan(letters, skipped, prediction)


def redrive_headers(
    letter: DeadLetter, operation_id: str, actor: str, reason: str, at_ms: int
) -> list[tuple[str, bytes]]:
    """The letter's headers (minus an earlier redrive's) plus who/when/why/where from."""
    return stamp_headers(
        "redrive.", letter.headers, operation_id, actor, reason, at_ms, position(letter)
    )


async def redrive(
    bootstrap: str,
    plan: RedrivePlan,
    headers_for: Callable[[DeadLetter], list[tuple[str, bytes]]],
    stop: asyncio.Event,
    on_sent: Callable[[DeadLetter], None] | None = None,
) -> list[str]:
    """Re-publish the plan's letters to their original topics; the positions sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    sent: list[str] = []
    try:
        for letter in plan.letters:
            if stop.is_set():
                break
            await producer.send_and_wait(
                letter.original_topic, letter.value, key=letter.key, headers=headers_for(letter)
            )
            sent.append(position(letter))
            if on_sent is not None:
                on_sent(letter)
    finally:
        await producer.stop()
    return sent


# ---------------------------------------------------------------- purge


def purge_cut(letters: list[DeadLetter], older_than_ms: int | None) -> dict[int, int]:
    """Per DLQ partition, the offset before which records go: after its last letter, or
    after the last of its oldest letters up to the first one not older than the cut-off
    (Kafka deletes a prefix of a partition, never a record in the middle)."""
    cut: dict[int, int] = {}
    blocked: set[int] = set()
    for letter in sorted(letters, key=lambda m: (m.partition, m.offset)):
        if letter.partition in blocked:
            continue
        if older_than_ms is not None and letter.timestamp_ms >= older_than_ms:
            blocked.add(letter.partition)
            continue
        cut[letter.partition] = letter.offset + 1
    return cut


def purged_letters(letters: list[DeadLetter], cut: dict[int, int]) -> list[DeadLetter]:
    return [m for m in letters if m.offset < cut.get(m.partition, -1)]


async def delete_before(bootstrap: str, topic: str, cut: dict[int, int]) -> dict[int, int]:
    """Delete each partition's records before its offset; the new log start offsets."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        answer = await admin.delete_records(
            {TopicPartition(topic, p): RecordsToDelete(before_offset=o) for p, o in cut.items()}
        )
        return {tp.partition: low for tp, low in answer.items()}
    finally:
        await admin.close()
