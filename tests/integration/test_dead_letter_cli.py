"""`boomerang dlq list` and `dlq show` on a real broker, through the entry point: dead letters
written the way the services write them are grouped, counted and shown decoded."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

from aiokafka import AIOKafkaProducer

from services.eventing.dead_letters import FailedRecord, dead_letter_headers
from services.eventing.event_publisher import producer_settings
from tests.support.return_events import event

DLQ = "boomerang.pickup.events.dlq"


def boomerang(bootstrap: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


async def _write_dead_letters(bootstrap: str, reason: str, values: list[bytes]) -> None:
    class Rejected(ValueError):
        pass

    Rejected.reason = reason  # type: ignore[attr-defined]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings())
    await producer.start()
    try:
        for offset, value in enumerate(values):
            failed = FailedRecord("boomerang.pickup.events", 1, offset, b"RMA-DLQ-IT", value)
            headers = dead_letter_headers(failed, Rejected("the test's poison"), "coordinator")
            await producer.send_and_wait(DLQ, value=value, key=b"RMA-DLQ-IT", headers=headers)
    finally:
        await producer.stop()


def test_dead_letters_are_listed_by_reason_and_shown_decoded(catalogue_topics, codec):
    reason = f"it-{uuid.uuid4().hex[:8]}"  # the broker may hold other dead letters
    valid = codec.encode("PickupCancelled", event("PickupCancelled", "RMA-DLQ-IT"))
    asyncio.run(_write_dead_letters(catalogue_topics, reason, [valid, b"\x00garbage"]))

    listed = boomerang(
        catalogue_topics, "dlq", "list", "--topic", "boomerang.pickup.events", "--json"
    )
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    [group] = [g for g in report["groups"] if g["reason"] == reason]
    assert (group["original_topic"], group["count"], group["max_attempt"]) == (
        "boomerang.pickup.events",
        2,
        1,
    )
    assert group["services"] == ["coordinator"]
    sample = group["sample"]
    assert sample["topic"] == DLQ

    shown = boomerang(
        catalogue_topics,
        "dlq",
        "show",
        DLQ,
        str(sample["partition"]),
        str(sample["offset"]),
        "--json",
    )
    assert shown.returncode == 0, shown.stderr
    letter = json.loads(shown.stdout)
    assert letter["payload"]["decoded"] is True
    assert letter["payload"]["event_type"] == "PickupCancelled"
    assert letter["headers"]["dlq.error.reason"] == reason
    assert letter["headers"]["dlq.original.topic"] == "boomerang.pickup.events"


def test_showing_a_record_that_does_not_exist_exits_1_with_the_reason(catalogue_topics):
    shown = boomerang(catalogue_topics, "dlq", "show", DLQ, "0", "999999999")
    assert shown.returncode == 1
    assert "no record at boomerang.pickup.events.dlq partition 0 offset 999999999" in shown.stderr
