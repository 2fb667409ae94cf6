"""The benchmark's open-loop load generator, run as its own process by run_bench.

    python -m tests.bench.load_generator --rate R --warmup-s W --duration-s D --out F ...

Returns arrive on a schedule (return i at start + i / R), each as its own task: a slow
answer never delays the next arrival, and every latency is measured from the *intended*
arrival time, so a backlog in this process or in the system shows up as latency instead of
being hidden (no coordinated omission). It plays the world around the loop: buyers POST
return requests, the carrier double (zero delay) calls the pickup service back, a scanner
POSTs the inspection as soon as PickupCompleted is seen, a buyer posts a bank account when
asked. Times come from record timestamps (RefundIssued, ReturnCompleted) and this machine's
clock, so the loop's latency does not include this process's consumer lag.

It is built to cost little CPU next to the loop on the same cores (its own CPU is reported
apart): one pooled keep-alive HTTP/1.1 client (aiohttp; httpx with --http-client httpx for
a back-to-back comparison), request bodies encoded before the clock starts, arrivals
started in ticks of --tick-ms (their latency still counts from their intended time), the
event watcher fetching in batches and decoding only the records it acts on (the event_type
header says which; the key is the return id).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from services.eventing.avro_codec import AvroCodec, CodecError
from services.eventing.schema_catalogue import SchemaCatalogue
from services.eventing.topics import ORDERS, RISK_COUNTS
from services.tools.local_stack.consumer_replay import wait_for_group
from services.tools.local_stack.drawn_returns import (
    TrackedReturn,
    delivered_at_ms,
    demo_bank_account,
    order_body,
    random_return,
)
from services.tools.local_stack.inspection_scans import scan_body
from services.tools.local_stack.loop_driver import watch_loop_events
from services.tools.local_stack.stack import STATION_TOKENS
from tests.bench.bench_figures import latency_summary

WATCHED = frozenset(
    {"PickupCompleted", "BuyerDetailsRequested", "RefundIssued", "ReturnCompleted", "ReturnFailed"}
)
RETRIED_STATUSES = frozenset({404, 409, 503})  # not there yet (a view catching up) or busy
OVERLOADED = b'"overloaded"'  # the front door's admission refusal (503): the buyer gives up
JSON_HEADERS = {"Content-Type": "application/json"}


def spread(urls: str, draw: int) -> str:
    """One of the comma-separated `urls` (one per instance), by `draw`."""
    choices = urls.split(",")
    return choices[draw % len(choices)]


class HttpClient(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST `body`; (status, response body). Raises `OSError` or `TimeoutError` subclasses
        when no answer came."""
        ...

    async def aclose(self) -> None: ...


class AiohttpClient:
    """aiohttp's pooled client: keep-alive connections, a timeout per request."""

    def __init__(self, connections: int, timeout_s: float) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            auto_decompress=False,
        )

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        try:
            async with self.session.post(url, data=body, headers=headers) as response:
                return response.status, await response.read()
        except aiohttp.ClientError as exc:
            raise ConnectionError(type(exc).__name__) from exc

    async def aclose(self) -> None:
        await self.session.close()


class HttpxClient:
    """httpx's pooled client, tuned: a small keep-alive pool (its pool bookkeeping grows
    with the number of connections)."""

    def __init__(self, connections: int, timeout_s: float) -> None:
        import httpx  # only for the comparison run

        self.errors = httpx.HTTPError
        self.client = httpx.AsyncClient(
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        try:
            response = await self.client.post(url, content=body, headers=headers)
        except self.errors as exc:
            raise ConnectionError(type(exc).__name__) from exc
        return response.status_code, response.content

    async def aclose(self) -> None:
        await self.client.aclose()


def http_client(name: str, connections: int, timeout_s: float) -> HttpClient:
    if name == "httpx":
        return HttpxClient(connections, timeout_s)
    return AiohttpClient(connections, timeout_s)


def backoff_s(attempt: int) -> float:
    """50 ms, growing by half each attempt, at most 1 s."""
    return min(1.0, 0.05 * 1.5**attempt)


@dataclass
class Arrival:
    index: int
    intended_s: float  # wall clock (time.time()) of the scheduled arrival
    measured: bool  # False during the warm-up
    tracked: TrackedReturn
    request_body: bytes
    scan_s: float = 0.0
    refund_issued_ms: int = 0
    completed_ms: int = 0
    failed: bool = False
    refused: bool = False  # the front door's admission control said 503 overloaded
    errors: list[str] = field(default_factory=list)
    authorization: str = ""  # the buyer's bearer token (signed in when the order was placed)

    @property
    def finished(self) -> bool:
        return bool(self.completed_ms) or self.failed or self.refused


class LoadGenerator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.codec = AvroCodec(SchemaCatalogue.load())
        run_id = uuid.uuid4().hex[:6]
        total = round(args.rate * (args.warmup_s + args.duration_s))
        warmup = round(args.rate * args.warmup_s)
        self.arrivals: list[Arrival] = []
        for i in range(total):  # built before the clock starts: not part of the load
            body, grades = random_return(self.rng, i, run_id, exchange_share=0.0, markets=("DE",))
            tracked = TrackedReturn(i, f"bench-{run_id}-{i}", body, 0, grades)
            self.arrivals.append(Arrival(i, 0.0, i >= warmup, tracked, json.dumps(body).encode()))
        self.by_return_id: dict[str, Arrival] = {}
        self.early: dict[str, list[tuple[str, int]]] = {}
        # One client per kind of caller, as in life: buyers asking for returns, buyers giving
        # bank details, warehouse scanners (made in the running loop: aiohttp needs it). A
        # pool shared by all of them made scans and bank details wait behind new requests
        # at 4× the offer (PickupCompleted → InspectionRecorded p95 28 s, every hop inside
        # the services under 1.5 s: `hop_delays`, stop 35).
        self.clients: dict[str, HttpClient] = {}
        self.tasks: set[asyncio.Task] = set()
        self.sent = 0
        self.requests = 0
        self.finished = 0
        self.all_finished = asyncio.Event()
        self.schedule_slip_ms: list[float] = []
        self.measure_window = (0.0, 0.0)
        self.setup_cpu_s = 0.0
        self.run_cpu_s = 0.0

    async def run(self) -> dict[str, Any]:
        if self.args.marketplace_url:
            read_before = await self._ledger_read()
            await self._place_orders(self.args.marketplace_url)
            # each order is placed and delivered: two records settlement reads
            await self._wait_for_ledger(read_before + 2 * len(self.arrivals))
        if self.args.orders_folded_by:
            # risk counts each order (and its buyer, seller, address...) long before a return
            await wait_for_group(
                self.args.bootstrap, self.args.orders_folded_by, (ORDERS, RISK_COUNTS), 300.0, 0.5
            )
        if self.args.ready_file:
            self.args.ready_file.write_text("orders placed\n")
        self.setup_cpu_s = time.process_time()  # imports, schemas, the drawn returns, orders
        self.clients = {
            what: http_client(self.args.http_client, self.args.connections, timeout_s=30.0)
            for what in ("request", "bank account", "sign-in", "scan")
        }
        consumer = await self._watch()
        watcher = asyncio.create_task(self._consume(consumer))
        progress = asyncio.create_task(self._progress())
        start = time.time() + 0.2
        self.measure_window = (
            start + self.args.warmup_s,
            start + self.args.warmup_s + self.args.duration_s,
        )
        try:
            await self._arrive(start)
            with contextlib.suppress(TimeoutError):  # the drain ends with the last return
                await asyncio.wait_for(self.all_finished.wait(), timeout=self.args.drain_s)
        finally:
            progress.cancel()
            watcher.cancel()
            for task in list(self.tasks):
                task.cancel()
            await consumer.stop()
            for client in self.clients.values():
                await client.aclose()
            self.run_cpu_s = time.process_time() - self.setup_cpu_s
        return self.result()

    async def _arrive(self, start: float) -> None:
        """Start every arrival that is due, then sleep until the next one (at least a tick)."""
        rate, tick_s = self.args.rate, self.args.tick_ms / 1000
        for arrival in self.arrivals:
            arrival.intended_s = start + arrival.index / rate
        if not self.arrivals:
            self.all_finished.set()
        due = 0
        while due < len(self.arrivals):
            now = time.time()
            while due < len(self.arrivals) and self.arrivals[due].intended_s <= now:
                arrival = self.arrivals[due]
                self.schedule_slip_ms.append((now - arrival.intended_s) * 1000)
                self._spawn(self._request(arrival))
                self.sent += 1
                due += 1
            if due < len(self.arrivals):
                await asyncio.sleep(max(tick_s, self.arrivals[due].intended_s - time.time()))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _watch(self) -> AIOKafkaConsumer:
        # The broker answers a fetch once 256 KB are there or 100 ms passed: ~10 fetches a
        # second whatever the rate (wake-ups are this process's main fixed cost). A scan
        # starts at most ~100 ms after its PickupCompleted; scan → refund is unaffected.
        return await watch_loop_events(
            self.args.bootstrap,
            max_poll_records=5000,
            fetch_min_bytes=256 * 1024,
            fetch_max_wait_ms=100,
        )

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                for message in messages:
                    self._on_event(message)

    def _on_event(self, message: ConsumerRecord) -> None:
        name = next((v.decode() for k, v in message.headers if k == "event_type"), None)
        if name is not None and name not in WATCHED:
            return  # most records: no decoding at all
        arrival = (
            self.by_return_id.get(message.key.decode(errors="replace")) if message.key else None
        )
        if name is None or arrival is None:  # no header, or a key that names no return
            try:
                decoded = self.codec.decode(message.value)
            except CodecError:
                return
            name = decoded.name
            return_id = decoded.record["envelope"]["return_id"]
            arrival = self.by_return_id.get(return_id)
            if arrival is None:
                # The loop can be faster than the answer to the request: keep the event
                # until the answer names the return (seen: collected before the 202 arrived).
                if name in WATCHED and len(self.early) < 100_000:
                    self.early.setdefault(return_id, []).append((name, message.timestamp))
                return
        self._apply(arrival, name, message.timestamp)

    def _apply(self, arrival: Arrival, name: str, timestamp_ms: int) -> None:
        was_finished = arrival.finished
        if name == "PickupCompleted" and not arrival.tracked.collected:
            arrival.tracked.collected = True
            self._spawn(self._scan(arrival))
        elif name == "BuyerDetailsRequested":
            self._spawn(self._bank_account(arrival))
        elif name == "RefundIssued" and not arrival.refund_issued_ms:
            arrival.refund_issued_ms = timestamp_ms
        elif name == "ReturnCompleted" and not arrival.completed_ms:
            arrival.completed_ms = timestamp_ms
        elif name == "ReturnFailed":
            arrival.failed = True
        if arrival.finished and not was_finished:
            self.finished += 1
            if self.finished == len(self.arrivals):
                self.all_finished.set()

    async def _post(
        self, arrival: Arrival, what: str, url: str, body: bytes, headers: dict[str, str]
    ) -> bytes | None:
        """POST until answered with a 2xx (the answer's body) or a final error (None);
        `scan_s` is when the accepted scan was sent."""
        for attempt in range(self.args.retries):
            started = time.time()
            self.requests += 1
            try:
                status, answer = await self.clients[what].post(url, body, headers)
            except (OSError, TimeoutError) as exc:
                arrival.errors.append(f"{what}: {type(exc).__name__} {exc}".strip())
            else:
                if status < 300:
                    if what == "scan":
                        arrival.scan_s = started
                    return answer
                if what == "request" and status == 503 and OVERLOADED in answer:
                    self._refused(arrival)
                    return None
                if status not in RETRIED_STATUSES:
                    arrival.errors.append(f"{what}: HTTP {status}")
                    return None
            await asyncio.sleep(backoff_s(attempt))
        arrival.errors.append(f"{what}: gave up after {self.args.retries} attempts")
        return None

    def _refused(self, arrival: Arrival) -> None:
        """Counted apart, not retried: the offered load stays the schedule."""
        if not arrival.finished:
            arrival.refused = True
            self.finished += 1
            if self.finished == len(self.arrivals):
                self.all_finished.set()

    async def _ledger_read(self) -> int:
        """Records settlement has read (0 without its address)."""
        if not self.args.ledger_url:
            return 0
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.args.ledger_url}/health") as answer,
        ):
            return int((await answer.json())["records_read"])

    async def _wait_for_ledger(self, read: int, timeout_s: float = 180.0) -> None:
        """Until settlement has read the orders just placed: in life they come long before
        the returns, and their burst must not fall into the measured window."""
        deadline = time.monotonic() + timeout_s
        while self.args.ledger_url and time.monotonic() < deadline:
            if await self._ledger_read() >= read:
                return
            await asyncio.sleep(0.5)

    async def _place_orders(self, marketplace_url: str) -> None:
        """Every arrival's order placed and delivered by the marketplace (not part of the
        load: the front door reads it for each return)."""
        limit = asyncio.Semaphore(32)
        async with aiohttp.ClientSession() as session:

            async def call(url: str, body: dict[str, Any], what: str) -> dict[str, Any]:
                for _ in range(10):
                    async with session.post(url, json=body) as answer:
                        if answer.status in (200, 201):
                            return await answer.json()
                    await asyncio.sleep(0.5)
                raise RuntimeError(f"{what} refused")

            async def place(arrival: Arrival) -> None:
                order = order_body(arrival.tracked)
                async with limit:
                    await call(f"{marketplace_url}/orders", order, f"order {order['order_ref']}")
                    await call(
                        f"{marketplace_url}/orders/{order['order_ref']}/delivered",
                        {"delivered_at": delivered_at_ms(arrival.tracked.body)},
                        f"delivery of {order['order_ref']}",
                    )
                    buyer = order["buyer_id"]
                    signed = await call(
                        f"{marketplace_url}/buyers/{buyer}/tokens", {}, f"sign-in of {buyer}"
                    )
                    arrival.authorization = f"Bearer {signed['token']}"

            await asyncio.gather(*(place(a) for a in self.arrivals))
        print(f"    placed {len(self.arrivals)} orders", file=sys.stderr, flush=True)

    async def _request(self, arrival: Arrival) -> None:
        tracked = arrival.tracked
        headers = {
            **JSON_HEADERS,
            "Idempotency-Key": tracked.idempotency_key,
            "Authorization": arrival.authorization,
        }
        url = f"{spread(self.args.returns_url, arrival.index)}/returns"
        answer = await self._post(arrival, "request", url, arrival.request_body, headers)
        if answer is None:
            return
        tracked.return_id = json.loads(answer)["return_id"]
        self.by_return_id[tracked.return_id] = arrival
        for name, timestamp_ms in self.early.pop(tracked.return_id, ()):
            self._apply(arrival, name, timestamp_ms)

    async def _scan(self, arrival: Arrival) -> None:
        station, body = scan_body(arrival.tracked, self.rng)
        headers = {**JSON_HEADERS, "Authorization": f"Bearer {STATION_TOKENS[station]}"}
        url = f"{spread(self.args.inspection_url, arrival.index)}/inspections"
        if await self._post(arrival, "scan", url, json.dumps(body).encode(), headers) is not None:
            arrival.tracked.scanned = True

    async def _bank_account(self, arrival: Arrival) -> None:
        base = spread(self.args.returns_url, arrival.index + 1)
        url = f"{base}/returns/{arrival.tracked.return_id}/bank-account"
        body = json.dumps(demo_bank_account(arrival.index)).encode()
        # a change of bank account needs a fresh sign-in: the buyer signs in again
        buyer = arrival.tracked.body["buyer_id"]
        signed_in = f"{self.args.marketplace_url}/buyers/{buyer}/tokens"
        answer = await self._post(arrival, "sign-in", signed_in, b"{}", JSON_HEADERS)
        if answer is None:
            return
        token = json.loads(answer)["token"]
        headers = {**JSON_HEADERS, "Authorization": f"Bearer {token}"}
        await self._post(arrival, "bank account", url, body, headers)

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            print(
                f"    {self.args.rate:g}/s: sent {self.sent}/{len(self.arrivals)}  "
                f"refunded {sum(1 for a in self.arrivals if a.refund_issued_ms)}  "
                f"completed {sum(1 for a in self.arrivals if a.completed_ms)}",
                file=sys.stderr,
                flush=True,
            )

    def result(self) -> dict[str, Any]:
        window_start, window_end = self.measure_window
        measured = [a for a in self.arrivals if a.measured]
        completed_in_window = sum(
            1
            for a in self.arrivals
            if a.completed_ms and window_start * 1000 <= a.completed_ms < window_end * 1000
        )
        request_to_refund = [
            a.refund_issued_ms - a.intended_s * 1000 for a in measured if a.refund_issued_ms
        ]
        scan_to_refund = [
            a.refund_issued_ms - a.scan_s * 1000
            for a in measured
            if a.refund_issued_ms and a.scan_s
        ]
        errors = [e for a in self.arrivals for e in a.errors]
        # admission control's promise: a return taken finishes within the target, the rest
        # are refused at the door; a request that got no answer (timed out, connection
        # refused, gave up) is neither
        accepted = [a for a in measured if a.tracked.return_id]
        target_ms = self.args.target_s * 1000
        within_target = sum(
            1
            for a in accepted
            if a.completed_ms and a.completed_ms - a.intended_s * 1000 <= target_ms
        )
        unanswered = sum(1 for a in measured if not a.tracked.return_id and not a.refused)
        return {
            "offered_per_s": self.args.rate,
            "created": len(self.arrivals),
            "measured": len(measured),
            "completed_total": sum(1 for a in self.arrivals if a.completed_ms),
            "completed_in_window": completed_in_window,
            "completed_per_s": completed_in_window / self.args.duration_s,
            "unfinished": sum(1 for a in measured if not a.finished),
            "refused": sum(1 for a in measured if a.refused),
            "accepted": len(accepted),
            "target_s": self.args.target_s,
            "accepted_within_target": within_target,
            "accepted_within_target_share": (
                round(within_target / len(accepted), 4) if accepted else None
            ),
            "requests_unanswered": unanswered,
            "failed": sum(1 for a in self.arrivals if a.failed),
            "completed_without_refund": sum(
                1 for a in measured if a.completed_ms and not a.refund_issued_ms
            ),
            "request_to_refund_ms": latency_summary(request_to_refund),
            "scan_to_refund_ms": latency_summary(scan_to_refund),
            "schedule_slip_ms": latency_summary(self.schedule_slip_ms),
            "errors": len(errors),
            "error_kinds": sorted(set(errors))[:10],
            "unfinished_return_ids": [
                a.tracked.return_id or a.tracked.idempotency_key for a in measured if not a.finished
            ][:10],
            "sample_return_ids": [
                a.tracked.return_id for a in measured if a.refund_issued_ms and a.completed_ms
            ][:25],
            "http_client": self.args.http_client,
            "http_requests": self.requests,
            "tick_ms": self.args.tick_ms,
            "generator_setup_cpu_s": round(self.setup_cpu_s, 2),
            "generator_run_cpu_s": round(self.run_cpu_s, 3),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.load_generator")
    parser.add_argument("--bootstrap", required=True)
    # several instances: their URLs comma-separated, requests spread over them
    parser.add_argument("--returns-url", required=True)
    parser.add_argument("--inspection-url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="returns per second offered")
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--drain-s", type=float, default=20.0)
    parser.add_argument(
        "--connections",
        type=int,
        default=1000,
        help="per kind of caller: an open-loop offer is not held back by its own pool (with "
        "100, at 4× the offer requests waited in the pool until they timed out while the "
        "front doors answered within a second)",
    )
    parser.add_argument("--http-client", choices=("aiohttp", "httpx"), default="aiohttp")
    parser.add_argument("--tick-ms", type=float, default=20.0, help="arrivals start in ticks")
    parser.add_argument("--retries", type=int, default=60)
    parser.add_argument(
        "--target-s",
        type=float,
        default=30.0,
        help="latency target: request → ReturnCompleted (admission control's promise)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--marketplace-url",
        default=None,
        help="place each return's order there first, before the clock starts (settlement "
        "in the loop charges from the orders; in life they exist long before a return)",
    )
    parser.add_argument(
        "--ledger-url", default=None, help="settlement: wait until it has read the orders"
    )
    parser.add_argument(
        "--orders-folded-by",
        default=None,
        help="a consumer group that reads the orders: wait until it has counted them",
    )
    parser.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        help="written when the orders are in, just before the clock starts",
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = asyncio.run(LoadGenerator(args).run())
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
