"""`boomerang dlq list` and `dlq show` on a real broker, through the entry point: dead letters
written the way the services write them are grouped, counted and shown decoded."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid

from tests.support.cli_process import run_cli
from tests.support.dead_letter_writer import write_dead_letters
from tests.support.return_events import event

DLQ = "boomerang.pickup.events.dlq"


def boomerang(bootstrap: str, *args: str) -> subprocess.CompletedProcess:
    return run_cli(bootstrap, *args, timeout=120)


def test_dead_letters_are_listed_by_reason_and_shown_decoded(catalogue_topics, codec):
    reason = f"it-{uuid.uuid4().hex[:8]}"  # the broker may hold other dead letters
    valid = codec.encode("PickupCancelled", event("PickupCancelled", "RMA-DLQ-IT"))
    asyncio.run(
        write_dead_letters(
            catalogue_topics,
            "boomerang.pickup.events",
            reason,
            [valid, b"\x00garbage"],
            b"RMA-DLQ-IT",
            "coordinator",
        )
    )

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
