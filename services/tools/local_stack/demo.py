"""`make demo`: real returns through the whole loop, on a real broker, in separate processes.

    python -m services.tools.local_stack.demo [--returns N] [--seed S]

Starts the broker (unless KAFKA_BOOTSTRAP_SERVERS points at one), creates the topics, starts
both partner doubles and the six services, then plays the world: buyers POST return
requests, the carrier double calls back, a simulated scanner POSTs an inspection once the
parcel has been collected. It prints progress, a summary table and, as its last line, one
JSON object. Every process it started is stopped at the end, also on Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.table import Table

from services.decisions.refunds.refund_plan import plan_refund
from services.eventing.avro_codec import AvroCodec, CodecError
from services.eventing.envelope import now_ms
from services.eventing.schema_catalogue import SchemaCatalogue
from services.eventing.topic_bootstrap import bootstrap_topics
from services.eventing.topics import PICKUP_EVENTS, REFUND_EVENTS, SAGA_EVENTS
from services.policy_files.loader import PolicySet, load_policy_set, policy_dir
from services.returns.return_policy import decide_return
from services.returns.return_request import parse_return_request
from services.tools.local_kafka.broker import LocalKafka, LocalKafkaSettings
from services.tools.local_stack.orphan_reaper import reap_children_if_i_die
from services.tools.local_stack.stack import PAYMENT_PROVIDERS, STATION_TOKENS, LocalStack

console = Console(stderr=True)
CATEGORIES = ("apparel", "shoes", "electronics", "home", "toys", "beauty")
REASONS = (
    "CHANGED_MIND",
    "WRONG_SIZE",
    "DEFECTIVE",
    "NOT_AS_DESCRIBED",
    "DAMAGED_ON_ARRIVAL",
    "LATE_DELIVERY",  # the platform's fault
)
TRANSIT_DAMAGE_SHARE = 0.08  # parcels that arrive damaged, outer box too: the carrier's fault


@dataclass
class TrackedReturn:
    index: int
    idempotency_key: str
    body: dict[str, Any]
    expected_minor: int
    grades: list[str] = field(default_factory=list)  # per returned unit, as scanned
    packaging_damaged: bool = False  # the scanner reports the outer box damaged on arrival
    expected_method: str = ""  # where the refund goes
    expected_liable: str = ""
    return_id: str = ""
    requested_at: float = 0.0
    collected: bool = False
    scanned: bool = False
    refunded_at: float = 0.0
    terminal: str = ""
    errors: list[str] = field(default_factory=list)


PAYMENT_METHODS = ("CARD", "CARD", "EWALLET", "BNPL", "DIRECT_DEBIT", "BANK_TRANSFER", "COD")
EXCHANGE_SHARE = 0.06  # returns asking for another variant instead of money
# the policies ask for photos of a fault (up to two for a defect in ID electronics)
PHOTO_REASONS = frozenset({"DAMAGED_ON_ARRIVAL", "DEFECTIVE", "NOT_AS_DESCRIBED"})


def make_request(rng: random.Random, index: int, run_id: str) -> TrackedReturn:
    """A buyer's return, with the refund the services should pay for it worked out from
    the same policy files they use. The demo drives returns that end with the money back
    (or a replacement): a draw the policy would reject is drawn again."""
    for _ in range(100):
        body, grades = random_return(rng, index, run_id)
        transit_damage = rng.random() < TRANSIT_DAMAGE_SHARE
        if transit_damage:
            grades = ["D", *grades[1:]]
        try:
            expected = expected_refund(body, grades, transit_damage)
            break
        except ValueError:
            continue
    else:
        raise RuntimeError("100 draws in a row were rejected by the policies: check them")
    if body.get("resolution") == "EXCHANGE" and not expected.reduced:
        # the marketplace double has stock: no money (an item the buyer damaged is refunded)
        expected = ExpectedRefund(0, "EXCHANGE", expected.liable)
    return TrackedReturn(
        index,
        f"demo-{run_id}-{index}",
        body,
        expected.amount_minor,
        grades,
        transit_damage,
        expected.method,
        expected.liable,
    )


@dataclass(frozen=True)
class DemoMarket:
    currency: str
    prices: tuple[int, int]  # unit prices drawn from this range, in minor units
    shipping_fees: tuple[int, ...]
    street: str
    delivered_days_ago: tuple[int, int]  # inside the market's shortest return window


MARKETS = {
    "DE": DemoMarket("EUR", (199, 25_000), (0, 399, 499), "Musterstrasse {n}, Berlin", (1, 25)),
    "ID": DemoMarket(
        "IDR", (15_000, 2_500_000), (0, 9_000, 15_000), "Jl. Sudirman {n}, Jakarta", (1, 6)
    ),
    "KW": DemoMarket("KWD", (500, 60_000), (0, 500, 750), "Block {n}, Salmiya", (1, 10)),
}
MARKET_MIX = ("DE", "DE", "DE", "ID", "KW")  # euro cents, rupiah without decimals, fils


def random_return(
    rng: random.Random,
    index: int,
    run_id: str,
    exchange_share: float = EXCHANGE_SHARE,
    markets: tuple[str, ...] = MARKET_MIX,
) -> tuple[dict[str, Any], list[str]]:
    """A buyer's return request body: mixed markets (and currencies of 0, 2 and 3
    decimals), categories, reasons and payment methods; half of them send the whole order
    (a voucher, shipping, a line kept). The grades each returned unit will be scanned with
    are chosen now (so the refund can be foreseen)."""
    market_code = rng.choice(markets)
    market = MARKETS[market_code]
    lines, order_lines = [], []
    for n in range(rng.randint(1, 3)):
        bought = rng.randint(1, 3)
        price = rng.randint(*market.prices)
        line_id = f"L{n + 1}"
        order_lines.append(
            {"line_id": line_id, "sku": f"SKU-{rng.randint(1, 400):04d}-{n}", "quantity": bought}
            | {"unit_price_minor": price}
        )
        lines.append(
            {
                "order_line_id": line_id,
                "sku": order_lines[-1]["sku"],
                "quantity": rng.randint(1, bought),
                "quantity_bought": bought,
                "unit_price": {"amount_minor": price, "currency": market.currency},
            }
        )
    reason = rng.choice(REASONS)
    delivered = datetime.now(UTC) - timedelta(days=rng.randint(*market.delivered_days_ago))
    body: dict[str, Any] = {
        "order_ref": f"ORD-{run_id}-{index:05d}",
        "buyer_id": f"B-{rng.randint(1, 5000)}",
        "seller_id": f"S-{rng.randint(1, 60)}",
        "category": rng.choice(CATEGORIES),
        "market": market_code,
        "reason_code": reason,
        "delivered_at": delivered.date().isoformat(),
        "payment_method": rng.choice(PAYMENT_METHODS),
        "pickup_address": market.street.format(n=rng.randint(1, 200)),
        "lines": lines,
        "photo_refs": [f"photo://{run_id}/{index}-{n}.jpg" for n in range(2)]
        if reason in PHOTO_REASONS
        else [],
        "store_credit": rng.random() < 0.1,
    }
    if body["payment_method"] == "BANK_TRANSFER" and rng.random() < 0.5:
        body["refund_account"] = demo_bank_account(index)  # else the saga asks for it
    if rng.random() < exchange_share:
        body |= {"resolution": "EXCHANGE", "exchange_sku": f"{lines[0]['sku']}-XL"}
        body.pop("store_credit")
    if rng.random() < 0.5:
        kept_price = rng.randint(*market.prices)
        kept = {"line_id": "LX", "sku": "SKU-KEPT", "quantity": 1, "unit_price_minor": kept_price}
        goods = sum(ol["unit_price_minor"] * ol["quantity"] for ol in order_lines) + kept_price
        body["order"] = {
            "currency": market.currency,
            "lines": [*order_lines, kept],
            "discount_minor": rng.randint(0, goods // 5),
            "shipping_fee_minor": rng.choice(market.shipping_fees),
        }
    grades = [rng.choice("AAAABBC") for line in lines for _ in range(line["quantity"])]
    return body, grades


def demo_bank_account(index: int) -> dict[str, str]:
    return {"holder": f"Demo Buyer {index}", "number": f"DE{index:020d}", "bank_code": "DEMOBANK"}


@dataclass(frozen=True)
class ExpectedRefund:
    amount_minor: int
    method: str
    liable: str
    reduced: bool = False  # damaged by the buyer: the policy reduced the refund


def expected_refund(
    body: dict[str, Any], grades: list[str], packaging_damaged: bool = False
) -> ExpectedRefund:
    """What the services should refund: the front door's and the saga's own pure decisions,
    on the policy files they load (deploy/policies, or $BOOMERANG_POLICY_DIR)."""
    request = parse_return_request(body)
    decision = decide_return(_policies(), request, now_ms())
    if not decision.accepted or decision.policy_json is None:
        raise ValueError(f"the demo built a return the policy rejects: {decision.detail}")
    items = [
        {"sku": "", "grade": grade, "matches_order": True, "packaging_damaged": packaging_damaged}
        for grade in grades
    ]
    plan = plan_refund(
        {**request.event_fields(), "reason_family": decision.reason_family},
        json.loads(decision.policy_json),
        items,
        carrier_noted_damage=False,
    )
    if plan.rejection or not plan.refund:
        raise ValueError(f"the policy rejects the return at inspection: {plan.rejection}")
    refund = plan.refund
    return ExpectedRefund(
        refund["amount"]["amount_minor"],
        refund["method"],
        refund["liable"],
        refund["liability"]["refund"] == "REDUCED",
    )


@cache
def _policies() -> PolicySet:
    return load_policy_set(policy_dir())


def scan_body(tracked: TrackedReturn, rng: random.Random) -> tuple[str, dict[str, Any]]:
    station = rng.choice(sorted(STATION_TOKENS))
    units = [line["sku"] for line in tracked.body["lines"] for _ in range(line["quantity"])]
    items = [
        {
            "sku": sku,
            "serial": None,
            "grade": grade,
            "matches_order": True,
            "measured_weight_grams": rng.randint(300, 900),
            "expected_weight_grams": None,
            "notes": "",
            "photo_refs": [],
            "packaging_damaged": tracked.packaging_damaged,
        }
        for sku, grade in zip(units, tracked.grades, strict=True)
    ]
    return station, {
        "scan_id": f"SCAN-{tracked.idempotency_key}",
        "return_id": tracked.return_id,
        "station_id": station,
        "inspector_id": f"I-{rng.randint(1, 12)}",
        "items": items,
    }


class LoopDriver:
    def __init__(
        self,
        stack: LocalStack,
        bootstrap: str,
        returns: int,
        seed: int,
        concurrency: int = 25,
        request_retries: int = 5,
    ) -> None:
        self.request_retries = request_retries
        self.scan_retries = 200 if request_retries <= 5 else 800  # ~2 min when chaos is on
        self.stack = stack
        self.bootstrap = bootstrap
        self.rng = random.Random(seed)
        self.run_id = uuid.uuid4().hex[:6]
        self.tracked = [make_request(self.rng, i, self.run_id) for i in range(returns)]
        self.by_return_id: dict[str, TrackedReturn] = {}
        self.concurrency = concurrency
        self.codec = AvroCodec(SchemaCatalogue.load())
        self.http = httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_connections=50))
        self.scans: set[asyncio.Task] = set()

    async def run(self, timeout_s: float) -> None:
        consumer = await self._watch_events()
        watcher = asyncio.create_task(self._consume(consumer))
        progress = asyncio.create_task(self._progress())
        try:
            semaphore = asyncio.Semaphore(self.concurrency)
            await asyncio.gather(*(self._request(t, semaphore) for t in self.tracked))
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and not all(t.terminal for t in self.tracked):
                await asyncio.sleep(0.2)
        finally:
            progress.cancel()
            watcher.cancel()
            for task in self.scans:
                task.cancel()
            await consumer.stop()
            await self.http.aclose()
        self._print_progress()

    async def _watch_events(self) -> AIOKafkaConsumer:
        return await watch_loop_events(self.bootstrap)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                for message in messages:
                    self._on_event(message.value)

    def _on_event(self, value: bytes) -> None:
        try:
            decoded = self.codec.decode(value)
        except CodecError:
            return
        tracked = self.by_return_id.get(decoded.record["envelope"]["return_id"])
        if tracked is None:
            return
        if decoded.name == "PickupCompleted" and not tracked.collected:
            tracked.collected = True
            task = asyncio.create_task(self._scan(tracked))
            self.scans.add(task)
            task.add_done_callback(self.scans.discard)
        elif decoded.name == "RefundIssued" and not tracked.refunded_at:
            tracked.refunded_at = time.monotonic()
        elif decoded.name == "BuyerDetailsRequested":
            task = asyncio.create_task(self._give_bank_account(tracked))
            self.scans.add(task)
            task.add_done_callback(self.scans.discard)
        elif decoded.name in ("ReturnCompleted", "ReturnFailed"):
            tracked.terminal = decoded.name

    async def _request(self, tracked: TrackedReturn, semaphore: asyncio.Semaphore) -> None:
        async with semaphore:
            for attempt in range(self.request_retries):
                try:
                    tracked.requested_at = time.monotonic()
                    response = await self.http.post(
                        f"{self.stack.url('returns')}/returns",
                        json=tracked.body,
                        headers={"Idempotency-Key": tracked.idempotency_key},
                    )
                except httpx.HTTPError as exc:
                    tracked.errors.append(f"request: {exc!r}")
                    await asyncio.sleep(min(2.0, 0.5 * (attempt + 1)))
                    continue
                if response.status_code in (202, 422) and "return_id" in response.json():
                    tracked.return_id = response.json()["return_id"]
                    self.by_return_id[tracked.return_id] = tracked
                    if response.status_code == 422:
                        tracked.terminal = "rejected at the door"
                    return
                tracked.errors.append(f"request: HTTP {response.status_code} {response.text[:200]}")
                await asyncio.sleep(min(2.0, 0.5 * (attempt + 1)))

    async def _give_bank_account(self, tracked: TrackedReturn) -> None:
        """The buyer answers the request for a bank account (a bank transfer or COD refund)."""
        await asyncio.sleep(self.rng.uniform(0.1, 0.5))
        url = f"{self.stack.url('returns')}/returns/{tracked.return_id}/bank-account"
        for attempt in range(self.request_retries):
            try:
                response = await self.http.post(url, json=demo_bank_account(tracked.index))
            except httpx.HTTPError as exc:
                tracked.errors.append(f"bank account: {exc!r}")
            else:
                if response.status_code == 202:
                    return
                tracked.errors.append(f"bank account: HTTP {response.status_code}")
            await asyncio.sleep(min(2.0, 0.5 * (attempt + 1)))

    async def _scan(self, tracked: TrackedReturn) -> None:
        await asyncio.sleep(self.rng.uniform(0.05, 0.3))  # the parcel reaches a station
        station, body = scan_body(tracked, self.rng)
        headers = {"Authorization": f"Bearer {STATION_TOKENS[station]}"}
        for _ in range(self.scan_retries):
            try:
                response = await self.http.post(
                    f"{self.stack.url('inspection')}/inspections", json=body, headers=headers
                )
            except httpx.HTTPError as exc:
                tracked.errors.append(f"scan: {exc!r}")
                await asyncio.sleep(0.5)
                continue
            if response.status_code == 202:
                tracked.scanned = True
                return
            if response.status_code in (404, 409, 503):  # the view is catching up
                await asyncio.sleep(0.15)
                continue
            tracked.errors.append(f"scan: HTTP {response.status_code} {response.text[:200]}")
            return

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            self._print_progress()

    def _print_progress(self) -> None:
        total = len(self.tracked)
        counts = (
            sum(bool(t.return_id) for t in self.tracked),
            sum(t.collected for t in self.tracked),
            sum(t.scanned for t in self.tracked),
            sum(bool(t.refunded_at) for t in self.tracked),
            sum(bool(t.terminal) for t in self.tracked),
        )
        console.print(
            f"  requested {counts[0]}/{total}  picked up {counts[1]}  inspected {counts[2]}  "
            f"refunded {counts[3]}  finished {counts[4]}"
        )


async def watch_loop_events(bootstrap: str, **settings: Any) -> AIOKafkaConsumer:
    """A started consumer on the topics the world reacts to (pickup, refund and saga
    events), positioned at their ends: it sees what happens from now on."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **settings)
    await consumer.start()
    partitions = [
        TopicPartition(topic.name, p)
        for topic in (PICKUP_EVENTS, REFUND_EVENTS, SAGA_EVENTS)
        for p in range(topic.partitions)
    ]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:  # resolve the end offsets now, before any return is requested
        await consumer.position(tp)
    return consumer


async def psp_ledger(*psp_urls: str) -> list[dict[str, Any]]:
    """Every provider's refunds (a card refund may have failed over to the second one)."""
    refunds: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=30.0) as http:
        for url in psp_urls:
            response = await http.get(f"{url}/refunds")
            response.raise_for_status()
            refunds += response.json()["refunds"]
    return refunds


async def saga_views(coordinator_url: str, return_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The coordinator's view of each return (`GET /returns/{id}`), for what it decided."""
    views: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(timeout=30.0) as http:
        for return_id in return_ids:
            response = await http.get(f"{coordinator_url}/returns/{return_id}")
            if response.status_code == 200:
                views[return_id] = response.json()
    return views


def summarize(
    driver: LoopDriver,
    ledger: list[dict[str, Any]],
    wall_s: float,
    views: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`views` (the coordinator's, by return id) adds the liable party the system decided,
    checked against the one foreseen."""
    ours = {t.return_id: t for t in driver.tracked if t.return_id}
    paid = [r for r in ledger if r["return_id"] in ours and r["status"] in ("succeeded", "pending")]
    per_return = Counter(r["return_id"] for r in paid)
    wrong_amounts = [r for r in paid if r["amount_minor"] != ours[r["return_id"]].expected_minor]
    wrong_methods = [r for r in paid if r["method"] != ours[r["return_id"]].expected_method]
    refunded_by_currency: Counter[str] = Counter()
    for refund in paid:
        refunded_by_currency[refund["currency"]] += refund["amount_minor"]
    completed = [t for t in driver.tracked if t.terminal == "ReturnCompleted"]
    decided = {
        t.return_id: ((views or {}).get(t.return_id, {}).get("liability") or {}).get("liable")
        for t in completed
    }
    wrong_liable = [
        t for t in completed if views is not None and decided[t.return_id] != t.expected_liable
    ]
    latencies = sorted(
        (t.refunded_at - t.requested_at) * 1000 for t in driver.tracked if t.refunded_at
    )

    def percentile(p: float) -> int:
        if not latencies:
            return 0
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))])

    return {
        "returns": len(driver.tracked),
        "completed": sum(t.terminal == "ReturnCompleted" for t in driver.tracked),
        "refunds_expected": sum(t.expected_minor > 0 for t in completed),
        "refunds_at_psp": len(per_return),
        "refunded_minor_by_currency": dict(sorted(refunded_by_currency.items())),
        "duplicates_at_psp": sum(count - 1 for count in per_return.values()),
        "wrong_amounts": len(wrong_amounts),
        "wrong_methods": len(wrong_methods),
        "exchanges_completed": sum(t.expected_method == "EXCHANGE" for t in completed),
        "by_market": dict(Counter(t.body["market"] for t in driver.tracked)),
        "by_payment_method": dict(Counter(t.body["payment_method"] for t in driver.tracked)),
        "by_refund_method": dict(Counter(t.expected_method for t in completed)),
        "wrong_liable": len(wrong_liable) if views is not None else None,
        "by_liable_party": dict(
            Counter(decided[t.return_id] if views else t.expected_liable for t in completed)
        ),
        "by_reason": dict(Counter(t.body["reason_code"] for t in driver.tracked)),
        "p50_ms": round(statistics.median(latencies)) if latencies else 0,
        "p95_ms": percentile(0.95),
        "wall_s": round(wall_s, 1),
    }


def print_table(summary: dict[str, Any], driver: LoopDriver) -> None:
    table = Table(title="Boomerang demo")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key, str(value))
    failures = [t for t in driver.tracked if t.terminal != "ReturnCompleted"]
    table.add_row("not completed", str(len(failures)))
    console.print(table)
    for tracked in failures[:5]:
        console.print(
            f"  {tracked.return_id or tracked.idempotency_key}: "
            f"terminal={tracked.terminal!r} errors={tracked.errors[-2:]}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.tools.local_stack.demo")
    parser.add_argument("--returns", type=int, default=int(os.environ.get("N") or 50))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SEED") or 42))
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait at the end")
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument(
        "--drill",
        choices=["consumer-bug"],
        default=os.environ.get("DRILL") or None,
        help="stage an incident for the runbook (implies --keep-running): consumer-bug = a "
        "faulty refund build dead-letters the refunds until the fixed build is deployed",
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        default=bool(os.environ.get("KEEP")),
        help="leave the system running after the summary (Ctrl-C stops it): for on-call drills",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()

    reap_children_if_i_die()  # a killed runner leaves no broker or service behind
    broker: LocalKafka | None = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = LocalKafka(LocalKafkaSettings.from_env(log=lambda m: console.print(f"  {m}")))
        already = any(s.running for s in broker.statuses())
        console.print("starting Kafka ..." if not already else "using the running local broker")
        bootstrap = broker.up(nodes=broker.formatted_nodes() or 1)
        if already:
            broker = None  # not ours to stop
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="boomerang-demo-", dir=_cache_dir()))
    stack = LocalStack(bootstrap, run_dir, log=lambda m: console.print(f"  {m}"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        report = asyncio.run(bootstrap_topics(bootstrap))
        console.print(f"topics: {report.lines()[0]}")
        console.print(f"starting 2 partner doubles and 6 services (logs in {run_dir / 'logs'}) ...")
        stack.start_all()
        if args.drill == "consumer-bug":
            return consumer_bug_drill(stack, bootstrap, args.returns, args.seed)
        console.print(f"driving {args.returns} returns (seed {args.seed}) ...")
        driver = LoopDriver(stack, bootstrap, args.returns, args.seed)
        timeout = args.timeout or 60 + args.returns * 0.5
        asyncio.run(driver.run(timeout))
        ledger = asyncio.run(psp_ledger(*(stack.url(p) for p in PAYMENT_PROVIDERS)))
        ids = [t.return_id for t in driver.tracked if t.return_id]
        views = asyncio.run(saga_views(stack.url("coordinator"), ids))
        summary = summarize(driver, ledger, time.monotonic() - started, views)
        print_table(summary, driver)
        print(json.dumps(summary), flush=True)
        ok = (
            summary["completed"] == summary["returns"]
            and summary["refunds_at_psp"] == summary["refunds_expected"]
            and summary["duplicates_at_psp"] == 0
            and summary["wrong_amounts"] == summary["wrong_methods"] == 0
            and summary["wrong_liable"] == 0
        )
        if args.keep_running:
            keep_running(stack, bootstrap)
        return 0 if ok else 1
    except KeyboardInterrupt:
        console.print("interrupted: stopping everything")
        return 130
    finally:
        stack.stop_all()
        if broker is not None:
            broker.down()
            console.print("stopped the broker this demo started")


def consumer_bug_drill(stack: LocalStack, bootstrap: str, returns: int, seed: int) -> int:
    """The runbook's first incident, staged: a refund-service build with a wrong PSP base
    URL is deployed (the PSPs answer 404, so every refund command is dead-lettered), the
    returns reach the refund step, the fixed build is deployed; the system keeps running
    for the on-call engineer to reprocess what failed."""
    refund = stack.processes["refund"]
    good = refund.env["PSP_PROVIDERS"]
    broken = {name: f"{url}/v0" for name, url in json.loads(good).items()}
    refund.env["PSP_PROVIDERS"] = json.dumps(broken)
    console.print("drill: deploying a faulty refund build (its PSP base URL ends in /v0) ...")
    stack.restart("refund", hard=False)
    console.print(f"driving {returns} returns (seed {seed}) into the faulty build ...")
    driver = LoopDriver(stack, bootstrap, returns, seed)
    asyncio.run(driver.run(timeout_s=20 + returns * 0.5))
    refund.env["PSP_PROVIDERS"] = good
    console.print("drill: deploying the fixed refund build ...")
    stack.restart("refund", hard=False)
    waiting = sum(1 for t in driver.tracked if not t.terminal)
    console.print(
        f"drill: {waiting} of {returns} returns wait for their refund; the refund commands the "
        "faulty build could not handle are in boomerang.refund.commands.dlq. Runbook: "
        "docs/runbook.md, incident 1."
    )
    keep_running(stack, bootstrap)
    return 0


def keep_running(stack: LocalStack, bootstrap: str) -> None:
    """Leave the system up for a person (e.g. an on-call drill) until Ctrl-C."""
    console.print("the system keeps running (Ctrl-C stops it). In another terminal:")
    console.print(f"  export KAFKA_BOOTSTRAP_SERVERS={bootstrap}")
    for name in ("returns", "coordinator", "inspection", "warehouse-intake", "refund", "psp"):
        console.print(f"  {name:<17} {stack.url(name)}")
    (Path(stack.run_dir) / "services.json").write_text(
        json.dumps({"bootstrap": bootstrap, **{n: stack.url(n) for n in stack.processes}}, indent=1)
    )
    console.print(f"  (addresses also in {Path(stack.run_dir) / 'services.json'})")
    while True:
        time.sleep(3600)


def _cache_dir() -> str:
    path = Path(__file__).resolve().parents[3] / ".cache" / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
