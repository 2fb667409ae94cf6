"""Reading the dead-letter topics of the catalogue (a thin aiokafka adapter)."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.eventing.topics import STREAMS, dead_letter_topic
from services.tools.oncall.dead_letter_report import DeadLetter
from services.tools.oncall.topic_reader import read_topic


class UnknownTopic(ValueError):
    """A topic that is neither a stream of the catalogue nor its dead-letter topic."""


def dead_letter_topics(topic: str | None = None) -> list[Any]:
    """The catalogue's dead-letter topics; `topic` narrows to one stream (or its .dlq)."""
    chosen = [
        dead_letter_topic(stream)
        for stream in STREAMS
        if topic is None or topic in (stream.name, dead_letter_topic(stream).name)
    ]
    if not chosen:
        names = ", ".join(s.name for s in STREAMS)
        raise UnknownTopic(f"{topic!r} is not a topic of the catalogue (one of: {names})")
    return chosen


def _dead_letter(message: Any) -> DeadLetter:
    return DeadLetter(
        message.topic,
        message.partition,
        message.offset,
        message.timestamp,
        message.key,
        message.value,
        tuple((k, bytes(v)) for k, v in message.headers or ()),
    )


async def _existing(bootstrap: str) -> set[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return set(await consumer.topics())
    finally:
        await consumer.stop()


async def read_dead_letters(bootstrap: str, topic: str | None = None) -> list[DeadLetter]:
    """Every dead letter of the chosen topics (topics not created yet hold none)."""
    existing = await _existing(bootstrap)
    letters: list[DeadLetter] = []
    for spec in dead_letter_topics(topic):
        if spec.name in existing:
            records = await read_topic(bootstrap, spec.name, spec.partitions)
            letters += [_dead_letter(message) for message in records]
    return letters


async def read_dead_letter(
    bootstrap: str, topic: str, partition: int, offset: int
) -> DeadLetter | None:
    """The dead letter at topic/partition/offset, or None when there is none."""
    if topic not in await _existing(bootstrap):
        return None
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        if not 0 <= offset < end:
            return None
        consumer.seek(tp, offset)
        while True:
            batch = await consumer.getmany(tp, timeout_ms=2000, max_records=1)
            for message in batch.get(tp, []):
                if message.offset == offset:
                    return _dead_letter(message)
                if message.offset > offset:  # compacted or deleted away
                    return None
            if not batch:
                return None
    finally:
        await consumer.stop()
