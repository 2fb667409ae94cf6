"""The chaos run's checks: what the partners recorded, events no saga saw, the dead-letter
topics, the stock movements expected, and the invariants a run must keep."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
from psycopg import AsyncConnection
from rich.console import Console

from services.decisions.saga import CONSUMED_EVENTS
from services.eventing.avro_codec import AvroCodec, CodecError
from services.eventing.topics import STREAMS, dead_letter_topic
from services.tools.local_stack.chaos_faults import POISON_HEADER
from services.tools.local_stack.consumer_replay import REPLAYED
from services.tools.local_stack.demo_settlement import ledger_figures, wait_for_ledger
from services.tools.local_stack.loop_records import psp_ledger, refunds_paid
from services.tools.local_stack.stack import PAYMENT_PROVIDERS, LocalStack
from services.tools.oncall.topic_reader import read_topic

console = Console(stderr=True)


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
    if "ledger_balanced" in summary:
        if not (summary["ledger_balanced"] and summary["ledger_caught_up"]):
            failures.append("the ledger is not balanced or did not catch up")
        for key in (
            "ledger_entries_booked_twice",
            "ledger_refund_mismatches",
            "seller_debit_mismatches",
            "settlement_rejects_of_ours",
            "completions_waiting_for_order",
        ):
            if summary.get(key):
                failures.append(f"{key} = {summary[key]}")
    return failures


async def settlement_checks(
    stack: LocalStack, views: dict[str, dict], refunds: list[dict], ours: set[str]
) -> dict[str, Any]:
    """Settlement after the chaos: the ledger balanced, no entry booked twice, every refund
    that moved money at a provider booked exactly once (and nothing booked that did not),
    every refunded SELLER-liable return debited to its seller exactly once, nothing of ours
    rejected or left waiting for its order."""
    if not stack.database_url:
        return {}
    caught_up = await wait_for_ledger(stack, timeout_s=300)
    figures = await ledger_figures(stack)
    paid = Counter(r["return_id"] for r in refunds_paid(refunds, ours))
    async with await AsyncConnection.connect(stack.database_url) as conn:
        cursor = await conn.execute(
            "SELECT e.return_id, count(*) FROM journal_entries e"
            " WHERE (e.step = 'refund' OR e.step LIKE 'refund:%')"
            " AND NOT EXISTS (SELECT 1 FROM journal_entries r WHERE r.reverses = e.entry_id)"
            " GROUP BY e.return_id"
        )
        booked = {r: n for r, n in await cursor.fetchall() if r in ours}
        cursor = await conn.execute(
            "SELECT e.return_id, count(DISTINCT e.entry_id) FROM journal_entries e"
            " JOIN postings p ON p.entry_id = e.entry_id AND p.booked_at = e.booked_at"
            " WHERE e.step = 'liability' AND p.account LIKE 'seller\\_payable:%'"
            " GROUP BY e.return_id"
        )
        debits = {r: n for r, n in await cursor.fetchall() if r in ours}
        cursor = await conn.execute("SELECT return_id, reason FROM settlement_rejects")
        rejects = [(r, why) for r, why in await cursor.fetchall() if r in ours]
        cursor = await conn.execute("SELECT return_id FROM pending_completions")
        waiting = [r for (r,) in await cursor.fetchall() if r in ours]
    seller_liable = {
        r
        for r, v in views.items()
        if v.get("status") == "COMPLETED"
        and (v.get("liability") or {}).get("liable") == "SELLER"
        and paid.get(r)
    }
    refund_mismatches = sorted(
        r for r in set(paid) | set(booked) if booked.get(r, 0) != (1 if paid.get(r) else 0)
    )
    debit_mismatches = sorted(r for r in seller_liable if debits.get(r, 0) != 1)
    for return_id in refund_mismatches[:5]:
        console.print(
            f"  ledger refund mismatch {return_id}: psp {paid.get(return_id, 0)}, "
            f"ledger {booked.get(return_id, 0)}"
        )
    for return_id, why in rejects[:5]:
        console.print(f"  not settled {return_id}: {why}")
    return {
        "ledger_caught_up": caught_up,
        "ledger_balanced": figures["ledger_balanced"],
        "ledger_postings": figures["postings"],
        "ledger_entries_booked_twice": figures["entries_booked_twice"],
        "ledger_refund_mismatches": len(refund_mismatches),
        "seller_liable_refunded": len(seller_liable),
        "seller_debit_mismatches": len(debit_mismatches),
        "settlement_rejects_of_ours": len(rejects),
        "completions_waiting_for_order": len(waiting),
    }
