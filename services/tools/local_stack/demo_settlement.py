"""The demo's money after the refunds: settlement's ledger read back once it has booked the
run, the open cycles' statements, and a reconciliation with an anomaly of each
provider-side kind put into a provider's report.

Reconciliation runs as a person runs it (`boomerang recon run --date D --json`, its own
process) for the run's day and the two days after it: a line that comes a day late
resolves, a refund never reported turns from `timing` into `missing_at_psp` once the
timing window (2 days) has passed. Every injected anomaly must be found in its category
and nothing else may break.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg import AsyncConnection
from rich.console import Console

from services.eventing.topics import ORDERS, REFUND_EVENTS, SAGA_EVENTS
from services.settlement.consumer import GROUP
from services.tools.local_stack.loop_driver import LoopDriver
from services.tools.local_stack.stack import (
    FINANCE_TOKEN,
    LEDGER,
    PAYMENT_PROVIDERS,
    LocalStack,
)
from services.tools.partners.psp_settlement_report import ANOMALIES

console = Console(stderr=True)
EXPECTED_CATEGORY = {
    "timing": "timing",
    "missing": "missing_at_psp",
    "unknown": "unknown_at_psp",
    "amount": "amount_mismatch",
    "currency": "currency_mismatch",
    "duplicate": "duplicate_at_psp",
    "fee": "fee_mismatch",
    "status": "status_mismatch",
}
RECON_DAYS = 3  # the run's day and two more: the timing window passes
BENT_PROVIDER = PAYMENT_PROVIDERS[0]  # the provider with most refunds (every method)


async def wait_for_ledger(stack: LocalStack, timeout_s: float) -> bool:
    """Until settlement has booked every record written since it started (its stored
    offsets at the topics' ends), no refund is still pending at a provider and every
    carrier claim has been decided by the carrier."""
    database_url = stack.database_url
    assert database_url is not None and stack.ledger_start_ms is not None
    deadline = time.monotonic() + timeout_s
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        while time.monotonic() < deadline:
            if await _no_pending_refunds(stack) and await _ledger_at_the_ends(
                consumer, database_url, stack.ledger_start_ms
            ):
                return True
            await asyncio.sleep(0.5)
        return False
    finally:
        await consumer.stop()


async def _no_pending_refunds(stack: LocalStack) -> bool:
    async with httpx.AsyncClient(timeout=10) as http:
        for provider in PAYMENT_PROVIDERS:
            refunds = (await http.get(f"{stack.url(provider)}/refunds")).json()["refunds"]
            if any(refund["status"] == "pending" for refund in refunds):
                return False
    return True


async def _ledger_at_the_ends(consumer: AIOKafkaConsumer, database_url: str, start_ms: int) -> bool:
    partitions = [
        TopicPartition(topic.name, p)
        for topic in (ORDERS, REFUND_EVENTS, SAGA_EVENTS)
        for p in range(topic.partitions)
    ]
    ends = await consumer.end_offsets(partitions)
    firsts = await consumer.offsets_for_times({tp: start_ms for tp in partitions})
    async with await AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT topic, partition, next_offset FROM consumer_offsets WHERE consumer = %s",
            (GROUP,),
        )
        stored = {(t, p): offset for t, p, offset in await cursor.fetchall()}
        cursor = await conn.execute(
            "SELECT count(*) FROM carrier_claims WHERE status IN ('to_file', 'filed', 'accepted')"
        )
        open_claims = (await cursor.fetchone())[0]
    for tp in partitions:
        if firsts.get(tp) is None:  # nothing written there since settlement started
            continue
        if stored.get((tp.topic, tp.partition), -1) < ends[tp]:
            return False
    return open_claims == 0  # every carrier claim filed, decided and paid (or rejected)


async def ledger_figures(stack: LocalStack) -> dict[str, Any]:
    """What the ledger holds for the run: balanced, postings, what sellers were charged,
    claims against carriers, entries booked twice (none), what could not be settled."""
    assert stack.database_url is not None
    async with await AsyncConnection.connect(stack.database_url) as conn:

        async def rows(query: str) -> list[tuple[Any, ...]]:
            return await (await conn.execute(query)).fetchall()

        imbalance = await rows(
            "SELECT currency, sum(amount_minor) FROM postings GROUP BY currency"
            " HAVING sum(amount_minor) <> 0"
        )
        postings = (await rows("SELECT count(*) FROM postings"))[0][0]
        seller_debits = await rows(
            "SELECT p.currency, sum(p.amount_minor) FROM postings p JOIN journal_entries e"
            " ON e.entry_id = p.entry_id AND e.booked_at = p.booked_at"
            " WHERE e.step = 'liability' AND p.account LIKE 'seller\\_payable:%'"
            " GROUP BY p.currency ORDER BY p.currency"
        )
        debited_returns = await rows(
            "SELECT count(DISTINCT e.return_id) FROM journal_entries e JOIN postings p"
            " ON e.entry_id = p.entry_id AND e.booked_at = p.booked_at"
            " WHERE e.step = 'liability' AND p.account LIKE 'seller\\_payable:%'"
        )
        claims = await rows(
            "SELECT count(DISTINCT e.entry_id) FROM journal_entries e JOIN postings p"
            " ON e.entry_id = p.entry_id AND e.booked_at = p.booked_at"
            " WHERE e.step = 'liability' AND p.account LIKE 'carrier\\_claims:%'"
        )
        twice = await rows(
            "SELECT count(*) FROM (SELECT return_id, step FROM journal_entries"
            " GROUP BY return_id, step HAVING count(*) > 1) twice"
        )
        refund_entries = await rows(
            "SELECT count(*) FROM journal_entries e WHERE e.step LIKE 'refund:%'"
            " AND e.refs->>'provider' <> 'store_credit' AND NOT EXISTS"
            " (SELECT 1 FROM journal_entries r WHERE r.reverses = e.entry_id)"
        )
        claims_by_status = await rows(
            "SELECT status, count(*) FROM carrier_claims GROUP BY status ORDER BY status"
        )
        rejects = await rows("SELECT reason FROM settlement_rejects")
        waiting = await rows("SELECT count(*) FROM pending_completions")
    for (reason,) in rejects[:5]:
        console.print(f"  not settled: {reason}")
    return {
        "ledger_balanced": not imbalance,
        "postings": postings,
        "seller_debits_minor_by_currency": {
            ccy.strip(): int(total) for ccy, total in seller_debits
        },
        "seller_debited_returns": debited_returns[0][0],
        "carrier_claims": claims[0][0],
        "carrier_claims_by_status": {status: n for status, n in claims_by_status},
        "ledger_refund_entries": refund_entries[0][0],
        "entries_booked_twice": twice[0][0],
        "settlement_rejects": len(rejects),
        "completions_waiting_for_order": waiting[0][0],
    }


async def draft_statements(stack: LocalStack, markets: list[str]) -> int:
    """How many statements (seller × currency) the markets' open cycles have so far."""
    url = stack.url(LEDGER)
    count = 0
    finance = {"Authorization": f"Bearer {FINANCE_TOKEN}"}
    async with httpx.AsyncClient(timeout=30, headers=finance) as http:
        for market in sorted(set(markets)):
            current = (await http.get(f"{url}/cycles/{market}/current")).json()
            number = current["number"]
            drafted = (await http.get(f"{url}/cycles/{market}/{number}/draft")).json()
            count += len(drafted["statements"])
    return count


def reconcile_run(stack: LocalStack, day: date) -> dict[str, Any]:
    """Bend the provider's report of `day` once per kind, reconcile `day` and the days after
    it; what was injected, found, and broken that was not injected."""
    refunds = httpx.get(f"{stack.url(BENT_PROVIDER)}/refunds", timeout=10).json()["refunds"]
    reportable = [
        r for r in refunds if r["status"] == "succeeded" and r["method"] != "STORE_CREDIT"
    ]
    # each kind bends one of our refunds, but `unknown` (a refund we never made): as many
    # kinds as there are refunds (a short run has fewer)
    bendable = [k for k in ANOMALIES if k != "unknown"][: len(reportable)]
    kinds = [k for k in ANOMALIES if k == "unknown" or k in bendable]
    answer = httpx.post(
        f"{stack.url(BENT_PROVIDER)}/admin/report-anomalies",
        json={"date": day.isoformat(), "kinds": kinds},
        timeout=10,
    )
    answer.raise_for_status()
    injected = {a["merchant_reference"]: a["kind"] for a in answer.json()["anomalies"]}
    found: dict[str, set[str]] = {}
    runs = []
    for offset in range(RECON_DAYS):
        result = _recon_day(stack, day + timedelta(days=offset))
        runs.append(result)
        for b in result["breaks"]:
            found.setdefault(b["reference"], set()).add(b["category"])
    found_in_category = sorted(
        kind for ref, kind in injected.items() if EXPECTED_CATEGORY[kind] in found.get(ref, set())
    )
    false_breaks = sorted(ref for ref in found if ref not in injected)
    for ref in false_breaks[:5]:
        console.print(f"  a break nobody injected: {ref} {sorted(found[ref])}")
    last = runs[-1]
    return {
        "recon_injected": len(injected),
        "recon_found": len(found_in_category),
        "recon_false_breaks": len(false_breaks),
        "recon_found_kinds": found_in_category,
        "recon_match_rate": last["match_rate"],
        "recon_tickets": sum(len(r["tickets_opened"]) for r in runs),
        "recon_breaks_by_category": dict(
            Counter(b["category"] for r in runs[:1] for b in r["breaks"])
        ),
        # the last day's run: what settlement's metrics show (open breaks as of it)
        "recon_breaks_last_run": dict(
            sorted(Counter(b["category"] for b in last["breaks"]).items())
        ),
    }


def _recon_day(stack: LocalStack, day: date) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "recon", "run", "--date", day.isoformat(), "--json"],
        env=stack.processes[LEDGER].env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise RuntimeError(f"recon run --date {day} failed ({done.returncode}): {done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    console.print(
        f"  recon {day}: {result['matched']}/{result['compared']} matched, "
        f"breaks {result['breaks_by_category'] or 'none'}"
    )
    return result


def charges_foreseen(driver: LoopDriver, views: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Who settlement should charge, from the returns refunded and the liable party the
    coordinator decided: the seller for SELLER and BUYER (the sale is reversed; the buyer's
    fees are kept from the refund, even when they take all of it: a refund of 0 still
    reverses the sale), a claim for CARRIER. An exchange moves no money: nothing."""
    liable = Counter(
        ((views.get(t.return_id, {}).get("liability") or {}).get("liable"))
        for t in driver.tracked
        if t.terminal == "ReturnCompleted" and t.expected_method != "EXCHANGE"
    )
    return {
        "seller_debits_expected": liable["SELLER"] + liable["BUYER"],
        "carrier_claims_expected": liable["CARRIER"],
    }


def settle_and_reconcile(stack: LocalStack, markets: list[str], timeout_s: float) -> dict[str, Any]:
    """The settlement figures of the demo's last line (settlement must be running)."""
    console.print("waiting for settlement to book the run ...")
    caught_up = asyncio.run(wait_for_ledger(stack, timeout_s))
    figures: dict[str, Any] = {"ledger_caught_up": caught_up}
    figures |= asyncio.run(ledger_figures(stack))
    figures["statements"] = asyncio.run(draft_statements(stack, markets))
    console.print("reconciling with the providers' reports (one anomaly of each kind) ...")
    figures |= reconcile_run(stack, datetime.now(UTC).date())
    return figures
