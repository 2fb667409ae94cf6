"""The consume loop's back-pressure: every partition paused while the buffer is full, the
admission topics' (new work) from the admission limit on, and while new work is let in a
fetch takes no more than fills the limit."""

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


def test_new_work_waits_from_the_admission_limit_started_work_only_when_full():
    consume, consumer = loop(frozenset({NEW_WORK}))
    limit = consume.admission_limit
    assert limit == 200  # 2 x max_in_flight (100), under half of max_buffered (2000)
    for outstanding, paused, at_most in [
        (0, set(), limit),
        (150, set(), limit - 150),
        (199, set(), 1),
        (200, {NEW_WORK}, 1800),
        (1999, {NEW_WORK}, 1),
        (2000, {NEW_WORK, STARTED_WORK}, 0),
        (2005, {NEW_WORK, STARTED_WORK}, -5),
        (500, {NEW_WORK}, 1500),
        (20, set(), limit - 20),
    ]:
        assert consume._throttle(outstanding) == at_most, outstanding
        assert topics(consumer) == paused, outstanding
    assert len(consumer.paused_now) == 0


def test_without_admission_topics_only_a_full_buffer_pauses_and_nothing_is_asked_twice():
    consume, consumer = loop(frozenset())
    assert consume._throttle(1990) == 10
    assert consumer.paused_now == set() and consumer.calls == 0
    assert consume._throttle(2000) == consume._throttle(2000) == 0
    assert len(consumer.paused_now) == 8 and consumer.calls == 1
    consume._throttle(1999)
    assert consumer.paused_now == set() and consumer.calls == 2
