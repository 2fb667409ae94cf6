"""The chaos run's checks: what the partners recorded, events no saga saw, the dead-letter
topics, the stock movements expected, and the invariants a run must keep."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from services.decisions.saga import CONSUMED_EVENTS
from services.eventing.avro_codec import AvroCodec, CodecError
from services.eventing.topics import STREAMS, dead_letter_topic
from services.tools.local_stack.chaos_faults import POISON_HEADER
from services.tools.local_stack.consumer_replay import REPLAYED
from services.tools.local_stack.loop_records import psp_ledger
from services.tools.local_stack.stack import PAYMENT_PROVIDERS, LocalStack
from services.tools.oncall.topic_reader import read_topic


async def partner_figures(stack: LocalStack) -> tuple[list[dict], dict[str, Any]]:
    """Every provider's refunds, and the warehouse-intake ledger's figures."""
    refunds = await psp_ledger(*(stack.url(p) for p in PAYMENT_PROVIDERS), timeout=60)
    return refunds, await intake_ledger(stack.url("warehouse-intake"))


async def intake_ledger(intake_url: str, timeout_s: float = 120) -> dict[str, Any]:
    """`GET /ledger`, once the ledger table has recovered (up to `timeout_s`)."""
    async with httpx.AsyncClient(timeout=60) as http:
        deadline = time.monotonic() + timeout_s
        while True:  # 503 while the ledger table is recovering: its figures would be partial
            answer = await http.get(f"{intake_url}/ledger")
            if answer.status_code != 503 or time.monotonic() > deadline:
                answer.raise_for_status()
                return answer.json()
            await asyncio.sleep(1)


async def lost_events(bootstrap: str, codec: AvroCodec, views: dict[str, dict]) -> list[dict]:
    """Events the coordinator should have consumed but whose id is in no saga's history."""
    seen = {h["event_id"] for view in views.values() for h in view["history"]}
    lost = []
    for topic in REPLAYED["boomerang-coordinator"]:
        for message in await read_topic(bootstrap, topic.name, topic.partitions):
            try:
                decoded = codec.decode(message.value)
            except CodecError:
                continue  # poison: checked against the dead-letter topics
            envelope = decoded.record["envelope"]
            if envelope["return_id"] not in views or envelope["attempt"] < 1:
                continue
            if decoded.name not in CONSUMED_EVENTS:
                continue  # the saga's own outcomes and requests (ReturnCompleted, …)
            if envelope["event_id"] not in seen:
                lost.append(
                    {
                        "topic": topic.name,
                        "partition": message.partition,
                        "offset": message.offset,
                        "timestamp": message.timestamp,
                        "event_type": decoded.name,
                        "event_id": envelope["event_id"],
                        "return_id": envelope["return_id"],
                    }
                )
    return lost


async def dead_letters(bootstrap: str) -> tuple[int, set[str]]:
    """How many records the dead-letter topics hold, and the poison ids among them."""
    total, poison_ids = 0, set()
    for stream in STREAMS:
        dlq = dead_letter_topic(stream)
        for message in await read_topic(bootstrap, dlq.name, dlq.partitions):
            total += 1
            for key, value in message.headers or ():
                if key == POISON_HEADER:
                    poison_ids.add(value.decode())
    return total, poison_ids


def expected_movements(views: dict[str, dict]) -> int:
    """The stock movements the sagas booked: each unit into its place, and for a reversal
    each one out again and into quarantine."""
    count = 0
    for view in views.values():
        movements = (view.get("intake") or {}).get("movements", [])
        count += len(movements)
        reversal_sent = any(
            c["command"] == "IntakeReverseRequested"
            for entry in view.get("history", [])
            for c in entry.get("commands", [])
        )
        if reversal_sent:  # each unit out of its place and into quarantine (even when the
            # saga ended before the reversal's confirmation came back)
            count += 2 * sum(1 for m in movements if m["disposition"] != "QUARANTINE")
    return count


def invariants(summary: dict[str, Any]) -> list[str]:
    """The invariants the summary breaks (none: the run passed)."""
    failures = []
    if summary["stuck"]:
        failures.append(f"{summary['stuck']} returns not terminal")
    if summary["refunds_at_psp"] != summary["refunds_expected"]:
        failures.append("refunds at the PSP differ from the refunds the sagas recorded")
    for key in (
        "double_refunds",
        "double_stock_moves",
        "lost_events",
        "replay_new_refunds",
        "replay_new_stock_moves",
        "wrong_http_answers",
    ):
        if summary.get(key):
            failures.append(f"{key} = {summary[key]}")
    if summary["poison_in_dlq"] != summary["poison_written"]:
        failures.append("not every poison record reached a dead-letter topic")
    return failures
