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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from services.eventing.avro_codec import AvroCodec, CodecError
from services.eventing.schema_catalogue import SchemaCatalogue
from services.tools.local_stack.drawn_returns import (
    TrackedReturn,
    demo_bank_account,
    random_return,
)
from services.tools.local_stack.inspection_scans import scan_body
from services.tools.local_stack.loop_driver import watch_loop_events
from services.tools.local_stack.stack import STATION_TOKENS
from tests.bench.bench_figures import latency_summary

WATCHED = frozenset(
    {"PickupCompleted", "BuyerDetailsRequested", "RefundIssued", "ReturnCompleted", "ReturnFailed"}
)


@dataclass
class Arrival:
    index: int
    intended_s: float  # wall clock (time.time()) of the scheduled arrival
    measured: bool  # False during the warm-up
    tracked: TrackedReturn
    scan_s: float = 0.0
    refund_issued_ms: int = 0
    completed_ms: int = 0
    failed: bool = False
    errors: list[str] = field(default_factory=list)


class LoadGenerator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.codec = AvroCodec(SchemaCatalogue.load())
        run_id = uuid.uuid4().hex[:6]
        total = round(args.rate * (args.warmup_s + args.duration_s))
        warmup = round(args.rate * args.warmup_s)
        self.arrivals = []
        for i in range(total):  # built before the clock starts: not part of the load
            body, grades = random_return(self.rng, i, run_id, exchange_share=0.0, markets=("DE",))
            tracked = TrackedReturn(i, f"bench-{run_id}-{i}", body, 0, grades)
            self.arrivals.append(Arrival(i, 0.0, i >= warmup, tracked))
        self.by_return_id: dict[str, Arrival] = {}
        self.early: dict[str, list[tuple[str, int]]] = {}
        self.http = httpx.AsyncClient(
            timeout=30.0,
            limits=httpx.Limits(
                max_connections=args.connections, max_keepalive_connections=args.connections
            ),
        )
        self.tasks: set[asyncio.Task] = set()
        self.sent = 0
        self.schedule_slip_ms: list[float] = []
        self.measure_window = (0.0, 0.0)

    async def run(self) -> dict[str, Any]:
        consumer = await self._watch()
        watcher = asyncio.create_task(self._consume(consumer))
        progress = asyncio.create_task(self._progress())
        start = time.time() + 0.2
        rate = self.args.rate
        self.measure_window = (
            start + self.args.warmup_s,
            start + self.args.warmup_s + self.args.duration_s,
        )
        try:
            for arrival in self.arrivals:
                arrival.intended_s = start + arrival.index / rate
                pause = arrival.intended_s - time.time()
                if pause > 0:
                    await asyncio.sleep(pause)
                self.schedule_slip_ms.append(max(0.0, (time.time() - arrival.intended_s) * 1000))
                self._spawn(self._request(arrival))
                self.sent += 1
            deadline = time.time() + self.args.drain_s
            while time.time() < deadline and not all(
                a.completed_ms or a.failed for a in self.arrivals
            ):
                await asyncio.sleep(0.1)
        finally:
            progress.cancel()
            watcher.cancel()
            for task in list(self.tasks):
                task.cancel()
            await consumer.stop()
            await self.http.aclose()
        return self.result()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _watch(self) -> AIOKafkaConsumer:
        return await watch_loop_events(self.args.bootstrap, max_poll_records=2000)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                for message in messages:
                    self._on_event(message.value, message.timestamp)

    def _on_event(self, value: bytes, timestamp_ms: int) -> None:
        try:
            decoded = self.codec.decode(value)
        except CodecError:
            return
        return_id = decoded.record["envelope"]["return_id"]
        arrival = self.by_return_id.get(return_id)
        if arrival is None:
            # The loop can be faster than the answer to the request: keep the event until
            # the answer names the return (seen: collected before the 202 arrived).
            if decoded.name in WATCHED and len(self.early) < 100_000:
                self.early.setdefault(return_id, []).append((decoded.name, timestamp_ms))
            return
        self._apply(arrival, decoded.name, timestamp_ms)

    def _apply(self, arrival: Arrival, name: str, timestamp_ms: int) -> None:
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

    async def _post(
        self, arrival: Arrival, what: str, url: str, **kwargs: Any
    ) -> httpx.Response | None:
        for attempt in range(self.args.retries):
            try:
                response = await self.http.post(url, **kwargs)
            except httpx.HTTPError as exc:
                arrival.errors.append(f"{what}: {type(exc).__name__}")
            else:
                if response.status_code < 300:
                    return response
                if response.status_code not in (404, 409, 503):
                    arrival.errors.append(f"{what}: HTTP {response.status_code}")
                    return None
            await asyncio.sleep(min(1.0, 0.05 * (attempt + 1)))
        arrival.errors.append(f"{what}: gave up after {self.args.retries} attempts")
        return None

    async def _request(self, arrival: Arrival) -> None:
        tracked = arrival.tracked
        response = await self._post(
            arrival,
            "request",
            f"{self.args.returns_url}/returns",
            json=tracked.body,
            headers={"Idempotency-Key": tracked.idempotency_key},
        )
        if response is not None:
            tracked.return_id = response.json()["return_id"]
            self.by_return_id[tracked.return_id] = arrival
            for name, timestamp_ms in self.early.pop(tracked.return_id, ()):
                self._apply(arrival, name, timestamp_ms)

    async def _scan(self, arrival: Arrival) -> None:
        station, body = scan_body(arrival.tracked, self.rng)
        headers = {"Authorization": f"Bearer {STATION_TOKENS[station]}"}
        url = f"{self.args.inspection_url}/inspections"
        for attempt in range(self.args.retries):
            started = time.time()
            try:
                response = await self.http.post(url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                arrival.errors.append(f"scan: {type(exc).__name__}")
            else:
                if response.status_code == 202:
                    arrival.scan_s = started
                    arrival.tracked.scanned = True
                    return
                if response.status_code not in (404, 409, 503):  # else the view catches up
                    arrival.errors.append(f"scan: HTTP {response.status_code}")
                    return
            await asyncio.sleep(min(1.0, 0.05 * (attempt + 1)))
        arrival.errors.append("scan: gave up")

    async def _bank_account(self, arrival: Arrival) -> None:
        url = f"{self.args.returns_url}/returns/{arrival.tracked.return_id}/bank-account"
        await self._post(arrival, "bank account", url, json=demo_bank_account(arrival.index))

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            done = sum(1 for a in self.arrivals if a.completed_ms)
            print(
                f"    {self.args.rate:g}/s: sent {self.sent}/{len(self.arrivals)}  "
                f"refunded {sum(1 for a in self.arrivals if a.refund_issued_ms)}  completed {done}",
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
        return {
            "offered_per_s": self.args.rate,
            "created": len(self.arrivals),
            "measured": len(measured),
            "completed_total": sum(1 for a in self.arrivals if a.completed_ms),
            "completed_in_window": completed_in_window,
            "completed_per_s": completed_in_window / self.args.duration_s,
            "unfinished": sum(1 for a in measured if not (a.completed_ms or a.failed)),
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
                a.tracked.return_id or a.tracked.idempotency_key
                for a in measured
                if not (a.completed_ms or a.failed)
            ][:10],
            "sample_return_ids": [
                a.tracked.return_id for a in measured if a.refund_issued_ms and a.completed_ms
            ][:25],
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.load_generator")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--returns-url", required=True)
    parser.add_argument("--inspection-url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="returns per second offered")
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--drain-s", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--retries", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = asyncio.run(LoadGenerator(args).run())
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
