"""The consume loop's back-pressure: every partition paused while the buffer is full, the
admission topics' (new work) already while it is half full, everything resumed with room."""

from __future__ import annotations

from aiokafka import TopicPartition

from services.engine.consume_loop import ConsumeLoop
from services.engine.settings import ServiceSettings

NEW_WORK = "boomerang.returns.events"
STARTED_WORK = "boomerang.pickup.events"


class Consumer:
    """The part of AIOKafkaConsumer the throttle uses: assignment and pause state."""

    def __init__(self) -> None:
        self.partitions = {TopicPartition(t, p) for t in (NEW_WORK, STARTED_WORK) for p in range(4)}
        self.paused_now: set[TopicPartition] = set()
        self.calls = 0

    def assignment(self) -> set[TopicPartition]:
        return set(self.partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_now)

    def pause(self, *partitions: TopicPartition) -> None:
        self.calls += 1
        self.paused_now |= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.calls += 1
        self.paused_now -= set(partitions)


def loop(admission: frozenset[str]) -> tuple[ConsumeLoop, Consumer]:
    settings = ServiceSettings("coordinator", 0, max_buffered=2000)
    consume = ConsumeLoop(settings, (), None, None, None, print, admission_topics=admission)  # type: ignore[arg-type]
    consume.consumer = Consumer()  # type: ignore[assignment]
    return consume, consume.consumer  # type: ignore[return-value]


def topics(consumer: Consumer) -> set[str]:
    return {tp.topic for tp in consumer.paused_now}


def test_new_work_waits_from_half_full_started_work_only_when_full():
    consume, consumer = loop(frozenset({NEW_WORK}))
    for room, paused in [
        (2000, set()),
        (1001, set()),
        (1000, {NEW_WORK}),
        (1, {NEW_WORK}),
        (0, {NEW_WORK, STARTED_WORK}),
        (-5, {NEW_WORK, STARTED_WORK}),
        (500, {NEW_WORK}),
        (1500, set()),
    ]:
        consume._throttle(room)
        assert topics(consumer) == paused, room
    assert len(consumer.paused_now) == 0


def test_without_admission_topics_only_a_full_buffer_pauses_and_nothing_is_asked_twice():
    consume, consumer = loop(frozenset())
    consume._throttle(10)
    assert consumer.paused_now == set() and consumer.calls == 0
    consume._throttle(0)
    consume._throttle(0)
    assert len(consumer.paused_now) == 8 and consumer.calls == 1
    consume._throttle(1)
    assert consumer.paused_now == set() and consumer.calls == 2
