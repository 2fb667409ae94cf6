"""One input record through RecordHandling with the real codec and an in-memory producer:
what a subscription that takes only some record types does with the others."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from services.engine.record_handling import RecordHandling
from services.engine.settings import ServiceSettings
from services.engine.state_store import StateStore
from services.eventing.avro_codec import AvroCodec
from services.eventing.handler_contract import Incoming, Subscription
from services.eventing.schema_catalogue import SchemaCatalogue
from tests.support.return_events import event

CODEC = AvroCodec(SchemaCatalogue.load())
TOPIC = "boomerang.pickup.events"
RID = "RMA-HANDLING-1"


@dataclass
class Delivered:
    """Stands in for RecordProducer: encodes as it does, keeps what would be delivered."""

    records: list[tuple] = field(default_factory=list)

    def encode(self, outbound: Any) -> list[tuple]:
        return [(TOPIC, None, CODEC.encode(name, record), []) for name, record, *_ in outbound]

    async def deliver(self, effects: list[tuple]) -> None:
        self.records += effects


def handled(value: bytes, accepts: frozenset[str] | None) -> tuple[list[str], list[tuple]]:
    seen: list[str] = []

    async def handler(incoming: Incoming) -> list:
        seen.append(incoming.name)
        return []

    delivered = Delivered()
    handling = RecordHandling(
        ServiceSettings("coordinator", 0), CODEC, delivered, StateStore(), asyncio.Semaphore(1)
    )
    message = SimpleNamespace(
        topic=TOPIC,
        partition=0,
        offset=7,
        timestamp=1_700_000_000_000,
        key=RID.encode(),
        value=value,
        headers=[],
    )
    subscription = Subscription("saga", (TOPIC,), handler, accepts=accepts)
    asyncio.run(handling.handle(message, subscription))
    return seen, delivered.records


def frame(name: str) -> bytes:
    return CODEC.encode(name, event(name, RID))


def test_a_type_the_subscription_takes_reaches_the_handler_and_others_do_not():
    takes = frozenset({"PickupCompleted"})
    assert handled(frame("PickupCompleted"), takes) == (["PickupCompleted"], [])
    assert handled(frame("PickupScheduled"), takes) == ([], [])
    assert handled(frame("PickupScheduled"), None) == (["PickupScheduled"], [])


def test_a_bad_body_of_a_type_not_taken_is_left_to_the_consumers_that_take_it():
    takes = frozenset({"PickupCompleted"})
    not_taken = frame("PickupScheduled")[:12] + b"\xff" * 5
    assert handled(not_taken, takes) == ([], [])
    taken = frame("PickupCompleted")[:12] + b"\xff" * 5
    seen, delivered = handled(taken, takes)
    assert seen == [] and [topic for topic, *_ in delivered] == [f"{TOPIC}.dlq"]


def test_a_frame_that_does_not_say_its_type_is_dead_lettered_whatever_is_taken():
    for value in (b"\x00\x01", b"{}" + bytes(20), b"\xc3\x01" + bytes(8) + b"body"):
        seen, delivered = handled(value, frozenset({"PickupCompleted"}))
        assert seen == [] and [topic for topic, *_ in delivered] == [f"{TOPIC}.dlq"]
