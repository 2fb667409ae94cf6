"""Playing the world around the services: buyers, the scanner, and watching the events.

Buyers POST their return requests (and a bank account when the saga asks for one); once a
parcel has been collected a station POSTs its inspection; a consumer on the pickup, refund
and saga topics follows each return to its end.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console

from services.eventing.avro_codec import AvroCodec, CodecError
from services.eventing.schema_catalogue import SchemaCatalogue
from services.eventing.topics import PICKUP_EVENTS, REFUND_EVENTS, SAGA_EVENTS
from services.tools.local_stack.drawn_returns import (
    TrackedReturn,
    delivered_at_ms,
    demo_bank_account,
    make_request,
    order_body,
)
from services.tools.local_stack.inspection_scans import rescan_body, scan_body
from services.tools.local_stack.stack import STATION_TOKENS, LocalStack

OVERLOAD_PATIENCE_S = 120.0  # how long a buyer keeps waiting out a front door shedding load
HOUR_MS = 3_600_000
_JITTER = random.Random()  # its own draws: the drawn returns stay those of the seed


def retry_after_s(response: httpx.Response) -> float:
    """The answer's Retry-After in seconds (1 when it says none or nothing readable; at
    most 5)."""
    try:
        return min(5.0, max(0.1, float(response.headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


console = Console(stderr=True)


def iso_instant(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


class LoopDriver:
    """Drives `returns` drawn returns (from `seed`) through the running stack to their end."""

    def __init__(
        self,
        stack: LocalStack,
        bootstrap: str,
        returns: int,
        seed: int,
        concurrency: int = 25,
        request_retries: int = 5,
        reschedule_share: float = 0.1,
        dispute_share: float = 0.0,
    ) -> None:
        # the marketplace places and delivers each return's order first: the front door
        # takes the return's facts from it, settlement its commission and rate
        self.orders_placed = 0
        self.orders_delivered = 0  # the marketplace delivered them (the return rate's base)
        self.overloaded = 0  # 503s the front door shed load with (waited out, then retried)
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
        self.http_answers: Counter[str] = Counter()  # "<call> <status>" → how many
        self.wrong_answers: list[str] = []  # answers that contradict what is known
        # buyers who ask to move their booked pickup (a day later), and how many asked
        self.reschedule_share = reschedule_share
        self.reschedules_asked = 0
        self._reschedule_draws = random.Random(seed + 1)  # not the returns' own draws
        # buyers of returns refunded less a damage deduction who dispute it; a second
        # station inspects the parcel again and finds no damage
        self.dispute_share = dispute_share
        self._dispute_draws = random.Random(seed + 2)

    def check_answer(self, call: str, response: httpx.Response, return_id: str | None) -> None:
        """Count an answer, and keep it as wrong when it contradicts what is known: a 5xx
        that is not a 503 with Retry-After (partitions moving, overload), a 404 for a return
        the driver saw on the topics (where the request landed must not matter), an answer
        about another return."""
        status = response.status_code
        self.http_answers[f"{call} {status}"] += 1
        wrong = ""
        if status >= 500 and not (status == 503 and "Retry-After" in response.headers):
            wrong = "server error"
        elif status == 404 and call in ("scan", "bank account"):
            wrong = "a known return not found"
        elif return_id is not None and 200 <= status < 300:
            answered = response.json().get("return_id")
            if answered not in (None, return_id):
                wrong = f"answered about {answered}"
        if wrong:
            self.wrong_answers.append(f"{call} {return_id}: HTTP {status} {wrong}")

    async def run(self, timeout_s: float) -> None:
        """Request every return, then wait up to `timeout_s` for all of them to end."""
        consumer = await self._watch_events()
        watcher = asyncio.create_task(self._consume(consumer))
        progress = asyncio.create_task(self._progress())
        try:
            semaphore = asyncio.Semaphore(self.concurrency)
            # the front door takes every return's facts from its order: placed first
            await asyncio.gather(*(self._place_order(t, semaphore) for t in self.tracked))
            await asyncio.gather(*(self._request(t, semaphore) for t in self.tracked))
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and not all(self._done(t) for t in self.tracked):
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
        """Move a tracked return on: collected (scan it), refunded, asked for details, ended."""
        try:
            decoded = self.codec.decode(value)
        except CodecError:
            return
        tracked = self.by_return_id.get(decoded.record["envelope"]["return_id"])
        if tracked is None:
            return
        if decoded.name == "PickupScheduled" and not tracked.collected and not tracked.moved:
            if self._reschedule_draws.random() < self.reschedule_share:
                tracked.moved = True
                self._in_background(self._move_pickup(tracked))
        elif decoded.name == "PickupCompleted" and not tracked.collected:
            tracked.collected = True
            self._in_background(self._scan(tracked))
        elif decoded.name == "RefundIssued" and not tracked.refunded_at:
            tracked.refunded_at = time.monotonic()
        elif decoded.name == "BuyerDetailsRequested":
            self._in_background(self._give_bank_account(tracked))
        elif decoded.name in ("ReturnCompleted", "ReturnFailed"):
            if not tracked.ended_at:
                tracked.ended_at = time.monotonic()
            tracked.terminal = decoded.name
            if self._disputes(tracked):
                tracked.dispute = "asked"
                self._in_background(self._dispute(tracked))
        elif decoded.name == "ReinspectionRequested" and tracked.dispute in ("asked", "refused"):
            tracked.dispute = "open"
            excluded = decoded.record["excluded_station_id"]
            self._in_background(self._scan(tracked, rescan_body(tracked, excluded)))
        elif decoded.name == "DisputeDecided":
            tracked.dispute = "decided"
            tracked.dispute_decision = decoded.record["decision"]
            tracked.dispute_refunded_minor = (decoded.record.get("refund") or {}).get(
                "amount_minor", 0
            )
        elif (
            decoded.name == "PickupAttemptFailed"
            and decoded.record["failure_reason"] != "CARRIER_ERROR"
            and not tracked.collected
        ):
            tracked.failed_pickup_attempts += 1

    @staticmethod
    def _done(tracked: TrackedReturn) -> bool:
        """Ended, and any dispute of it decided (or refused)."""
        return bool(tracked.terminal) and tracked.dispute not in ("asked", "open")

    def _disputes(self, tracked: TrackedReturn) -> bool:
        """A completed return the scan graded damaged (a deduction, unless the seller was
        at fault), its buyer drawn to dispute it (once)."""
        return (
            tracked.terminal == "ReturnCompleted"
            and not tracked.dispute
            and not tracked.abuse
            and any(grade in ("C", "D") for grade in tracked.grades)
            and self._dispute_draws.random() < self.dispute_share
        )

    async def _dispute(self, tracked: TrackedReturn) -> None:
        """The buyer disputes the deduction; a return the saga will not reopen (refunded
        in full: the seller was at fault) is seen refused on its view."""
        asked = {"reason": "DAMAGE_NOT_MINE", "details": "it left my hands undamaged"}
        await self._buyer_asks(tracked, "dispute", "disputes", asked)
        view_url = f"{self.stack.url('coordinator')}/returns/{tracked.return_id}"
        for _ in range(100):
            await asyncio.sleep(0.3)
            if tracked.dispute != "asked":
                return
            try:
                view = (await self.http.get(view_url)).json()
            except (httpx.HTTPError, ValueError):
                continue
            if (view.get("dispute") or {}).get("status") == "REFUSED":
                tracked.dispute = "refused"
                return
        tracked.dispute = "refused"
        tracked.errors.append("dispute: neither opened nor refused in 30 s")

    def _in_background(self, step: Coroutine[Any, Any, None]) -> None:
        """Run a buyer's or scanner's step as a task, cancelled when the run ends."""
        task = asyncio.create_task(step)
        self.scans.add(task)
        task.add_done_callback(self.scans.discard)

    async def _request(self, tracked: TrackedReturn, semaphore: asyncio.Semaphore) -> None:
        """The buyer POSTs the return (retrying with the same idempotency key). A front door
        shedding load (503 with Retry-After) is waited out as it asks, for up to
        OVERLOAD_PATIENCE_S, without using up a retry (a buyer's app does the same)."""
        patience_until = time.monotonic() + OVERLOAD_PATIENCE_S
        async with semaphore:
            headers = {"Idempotency-Key": tracked.idempotency_key}
            headers |= await self._signed_in(tracked)
            attempt = 0
            while attempt < self.request_retries:
                try:
                    tracked.requested_at = time.monotonic()
                    response = await self.http.post(
                        f"{self.stack.url_of('returns', tracked.index)}/returns",
                        json=tracked.body,
                        headers=headers,
                    )
                except httpx.HTTPError as exc:
                    tracked.errors.append(f"request: {exc!r}")
                    attempt += 1
                    await asyncio.sleep(min(2.0, 0.5 * attempt))
                    continue
                self.check_answer("request", response, None)
                if response.status_code in (202, 422) and "return_id" in response.json():
                    tracked.return_id = response.json()["return_id"]
                    self.by_return_id[tracked.return_id] = tracked
                    if response.status_code == 422:
                        tracked.terminal = "rejected at the door"
                    return
                if response.status_code == 503 and time.monotonic() < patience_until:
                    self.overloaded += 1
                    await asyncio.sleep(retry_after_s(response) * _JITTER.uniform(0.8, 1.5))
                    continue
                tracked.errors.append(f"request: HTTP {response.status_code} {response.text[:200]}")
                attempt += 1
                await asyncio.sleep(min(2.0, 0.5 * attempt))

    async def _place_order(self, tracked: TrackedReturn, semaphore: asyncio.Semaphore) -> None:
        """The marketplace places the order the return is about and delivers it (each once
        per order_ref: a retry after a lost answer gets the same order)."""
        marketplace = self.stack.url("marketplace")
        order = order_body(tracked)
        async with semaphore:
            if await self._marketplace_call(tracked, "order", f"{marketplace}/orders", order):
                self.orders_placed += 1
                delivered = f"{marketplace}/orders/{order['order_ref']}/delivered"
                when = {"delivered_at": delivered_at_ms(tracked.body)}
                if await self._marketplace_call(tracked, "delivery", delivered, when):
                    self.orders_delivered += 1

    async def _signed_in(self, tracked: TrackedReturn) -> dict[str, str]:
        """The buyer signs in at the marketplace: the Authorization header of their calls
        (none when the marketplace never answered: the front door then answers 401)."""
        buyer = tracked.body["buyer_id"]
        url = f"{self.stack.url('marketplace')}/buyers/{buyer}/tokens"
        answer = await self._marketplace_call(tracked, "sign-in", url, {})
        return {} if answer is None else {"Authorization": f"Bearer {answer['token']}"}

    async def _marketplace_call(
        self, tracked: TrackedReturn, call: str, url: str, body: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """POST until the marketplace answers 200 or 201: its answer (None when it never
        did)."""
        for attempt in range(self.request_retries):
            try:
                response = await self.http.post(url, json=body)
            except httpx.HTTPError as exc:
                tracked.errors.append(f"{call}: {exc!r}")
            else:
                self.check_answer(call, response, None)
                if response.status_code in (200, 201):
                    return response.json()
                tracked.errors.append(f"{call}: HTTP {response.status_code} {response.text[:200]}")
            await asyncio.sleep(min(2.0, 0.5 * (attempt + 1)))
        return False

    async def _give_bank_account(self, tracked: TrackedReturn) -> None:
        """The buyer answers the request for a bank account (a bank transfer or COD refund)."""
        await asyncio.sleep(self.rng.uniform(0.1, 0.5))
        returns_url = self.stack.url_of("returns", tracked.index + 1)
        url = f"{returns_url}/returns/{tracked.return_id}/bank-account"
        buyer = await self._signed_in(tracked)  # a change of account needs a fresh sign-in
        for attempt in range(self.request_retries):
            try:
                response = await self.http.post(
                    url, json=demo_bank_account(tracked.index), headers=buyer
                )
            except httpx.HTTPError as exc:
                tracked.errors.append(f"bank account: {exc!r}")
            else:
                self.check_answer("bank account", response, tracked.return_id)
                if response.status_code == 202:
                    return
                tracked.errors.append(f"bank account: HTTP {response.status_code}")
            await asyncio.sleep(min(2.0, 0.5 * (attempt + 1)))

    async def _move_pickup(self, tracked: TrackedReturn) -> None:
        """The buyer asks for tomorrow's window instead (the carrier may have collected
        the parcel already: then the move is refused, and that is fine)."""
        start = (int(time.time() * 1000) // HOUR_MS + 26) * HOUR_MS
        window = {
            "window_start": iso_instant(start),
            "window_end": iso_instant(start + 4 * HOUR_MS),
        }
        if await self._buyer_asks(tracked, "pickup window", "pickup-window", window):
            self.reschedules_asked += 1

    async def _buyer_asks(
        self, tracked: TrackedReturn, call: str, path: str, body: dict[str, Any]
    ) -> bool:
        """The buyer POSTs `body` to `/returns/{id}/{path}` at the front door (signed in;
        retried): True once it answered 202."""
        returns_url = self.stack.url_of("returns", tracked.index)
        url = f"{returns_url}/returns/{tracked.return_id}/{path}"
        buyer = await self._signed_in(tracked)
        for attempt in range(self.request_retries):
            try:
                response = await self.http.post(url, json=body, headers=buyer)
            except httpx.HTTPError as exc:
                tracked.errors.append(f"{call}: {exc!r}")
            else:
                self.check_answer(call, response, tracked.return_id)
                if response.status_code == 202:
                    return True
                tracked.errors.append(f"{call}: HTTP {response.status_code}")
            await asyncio.sleep(min(2.0, 0.5 * (attempt + 1)))
        return False

    async def _scan(
        self, tracked: TrackedReturn, scan: tuple[str, dict[str, Any]] | None = None
    ) -> None:
        """A station scans the collected parcel (retrying while the view catches up); a
        disputed one is scanned again as `scan` says."""
        await asyncio.sleep(self.rng.uniform(0.05, 0.3))  # the parcel reaches a station
        station, body = scan or scan_body(tracked, self.rng)
        headers = {"Authorization": f"Bearer {STATION_TOKENS[station]}"}
        for _ in range(self.scan_retries):
            try:
                response = await self.http.post(
                    f"{self.stack.url_of('inspection', tracked.index)}/inspections",
                    json=body,
                    headers=headers,
                )
            except httpx.HTTPError as exc:
                tracked.errors.append(f"scan: {exc!r}")
                await asyncio.sleep(0.5)
                continue
            self.check_answer("scan", response, tracked.return_id)
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
