"""The chaos run's faults, from a seeded plan: services SIGKILLed, the broker stopped (or a
partition leader killed), partners failing, poison records and malformed scans."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from fastavro.utils import generate_one
from rich.console import Console

from services.eventing.avro_codec import AvroCodec
from services.eventing.envelope import new_envelope
from services.eventing.event_publisher import producer_settings
from services.eventing.schema_catalogue import SchemaCatalogue
from services.eventing.topics import (
    ORDERS,
    REFUND_COMMANDS,
    RISK_BUYERS,
    STREAMS,
    SUPPORT_TICKETS,
)
from services.tools.local_kafka.broker import LocalKafka
from services.tools.local_postgres.server import LocalPostgres, LocalPostgresSettings
from services.tools.local_stack.drawn_returns import TrackedReturn
from services.tools.local_stack.inspection_scans import scan_body, scan_request, scanned_item
from services.tools.local_stack.loop_driver import LoopDriver
from services.tools.local_stack.stack import LEDGER, STATION_TOKENS, LocalStack

console = Console(stderr=True)
POISON_HEADER = "chaos.poison-id"
RANDOM_KILLS_S = 240.0  # how long services are killed at random (a good run drives ~150 s)
# the topics a service of the local stack consumes in a group: not the support tickets
# (people read them), not the marketplace's orders (settlement keeps what it cannot book in
# its database, not in a dead-letter topic), not the buyers risk flags (the front door reads
# them whole and skips, counted, what it cannot read, as a global table does)
INPUT_STREAMS = tuple(s for s in STREAMS if s not in (SUPPORT_TICKETS, ORDERS, RISK_BUYERS))


@dataclass
class ChaosLog:
    """What the faults did, for the summary."""

    kills: Counter = field(default_factory=Counter)
    broker_restarts: int = 0
    postgres_restarts: int = 0
    scale_events: list[str] = field(default_factory=list)  # instances added, then removed
    poison: dict[str, str] = field(default_factory=dict)  # poison id -> topic
    malformed_scans: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)


class ChaosRun:
    """One chaos run: the loop driver and, beside it, the faults."""

    def __init__(
        self,
        stack: LocalStack,
        broker: LocalKafka | None,
        bootstrap: str,
        nodes: int,
        returns: int,
        seed: int,
    ) -> None:
        self.stack = stack
        self.broker = broker
        self.bootstrap = bootstrap
        self.nodes = nodes
        self.seed = seed
        self.rng = random.Random(seed)
        self.driver = LoopDriver(
            # a buyer whose request failed tries again (up to ~20 min): a returns service
            # down for minutes must not lose requests, or the run never reaches its tail
            stack,
            bootstrap,
            returns,
            seed,
            concurrency=20,
            request_retries=600,
        )
        self.codec = AvroCodec(SchemaCatalogue.load())
        self.log = ChaosLog()
        self.done = asyncio.Event()

    # -- faults

    async def configure_partner_faults(self) -> None:
        """The PSP and the carrier fail transiently (errors, ghosts) and for good (declines)."""
        async with httpx.AsyncClient(timeout=10) as http:
            await http.post(
                f"{self.stack.url('psp')}/admin/faults",
                json={
                    "error_rate": 0.07,
                    "ghost_rate": 0.03,
                    "decline_rate": 0.015,
                    "seed": self.seed,
                },
            )
            await http.post(
                f"{self.stack.url('carrier')}/admin/faults",
                json={
                    "error_rate": 0.07,
                    "attempt_failure_rate": 0.25,
                    "max_failed_attempts": 3,
                    "seed": self.seed,
                },
            )

    async def kill_services(self, interval_s: float) -> None:
        """Every service is killed at least twice (a shuffled plan), then at random while
        returns still flow. A killed service is started again at once, as a supervisor would.

        Random kills stop once 95 % of the returns are finished, or after `RANDOM_KILLS_S`:
        the tail's timers and retries need a group that stays up longer than one rebalance
        (with a kill every few seconds a consumer group never settles, which no deployment
        sees; a run whose services kept being killed while they recovered never got there)."""
        processes = self.stack.service_processes
        plan = [*processes] if self.stack.instances > 1 else [*processes, *processes]
        self.rng.shuffle(plan)
        stop_at = time.monotonic() + RANDOM_KILLS_S
        while plan or not (self.done.is_set() or self.in_the_tail() or time.monotonic() > stop_at):
            await asyncio.sleep(interval_s * self.rng.uniform(0.7, 1.3))
            name = plan.pop() if plan else self.rng.choice(processes)
            console.print(f"  [chaos] SIGKILL {name}")
            self.log.kills[name] += 1
            await asyncio.to_thread(self.stack.kill, name)  # the supervisor restarts it
        await asyncio.to_thread(self.stack.wait_healthy, list(processes), 180.0)

    def in_the_tail(self) -> bool:
        """95 % of the returns have ended."""
        tracked = self.driver.tracked
        return sum(bool(t.terminal) for t in tracked) >= 0.95 * len(tracked)

    async def scale_out_and_in(self, after_s: float, kept_s: float) -> None:
        """With several instances: after `after_s`, one more instance of a drawn service
        joins its group (its partitions move while returns flow), and after `kept_s` it
        stops again (they move back)."""
        if self.stack.instances < 2:
            return
        await asyncio.sleep(after_s)
        service = self.rng.choice(
            sorted({name.partition("#")[0] for name in self.stack.service_processes})
        )
        name = self.stack.add_instance(service)
        console.print(f"  [chaos] scale out: {name} joins")
        self.stack.start(name)
        await asyncio.sleep(kept_s)
        console.print(f"  [chaos] scale in: {name} stops")
        await asyncio.to_thread(self.stack.forget, name)
        self.log.scale_events.append(name)

    async def kill_settlement(self, after_s: float, times: int = 2) -> None:
        """SIGKILL settlement `times` times, `after_s` apart (the supervisor restarts it; it
        reads again from the offsets its ledger stored)."""
        if not self.stack.ledger_processes:
            return
        for _ in range(times):
            await asyncio.sleep(after_s)
            console.print(f"  [chaos] SIGKILL {LEDGER}")
            self.log.kills[LEDGER] += 1
            await asyncio.to_thread(self.stack.kill, LEDGER)

    async def restart_postgres(self, after_s: float) -> None:
        """After `after_s`: PostgreSQL crashes (immediate stop) and starts again; settlement
        reconnects and goes on from the offsets committed with its last transaction."""
        await asyncio.sleep(after_s)
        if os.environ.get("DATABASE_URL") or not self.stack.database_url:
            self.log.notes.append("external PostgreSQL: not restarted")
            return
        cluster = LocalPostgres(LocalPostgresSettings.from_env(log=lambda message: None))
        console.print("  [chaos] PostgreSQL crashes (immediate stop) and starts again")
        await asyncio.to_thread(cluster.crash_and_restart)
        self.log.postgres_restarts += 1

    async def restart_broker(self, after_s: float) -> None:
        """After `after_s`: stop and start the broker, or kill a partition leader of three."""
        await asyncio.sleep(after_s)
        if self.broker is None:
            self.log.notes.append("external cluster: broker not restarted")
            return
        if self.nodes == 1:
            console.print("  [chaos] stopping the broker")
            await asyncio.to_thread(self.broker.down)
            await asyncio.sleep(5)
            console.print("  [chaos] starting the broker again")
            await asyncio.to_thread(self.broker.up, 1)
        else:
            leader = await self._leader_of(REFUND_COMMANDS.name, 0)
            console.print(f"  [chaos] SIGKILL broker node {leader} (leader of refund.commands-0)")
            await asyncio.to_thread(self.broker.kill_node, leader)
            await asyncio.sleep(10)
            console.print(f"  [chaos] restarting node {leader}")
            await asyncio.to_thread(self._restart_node, leader)
        self.log.broker_restarts += 1

    def _restart_node(self, node_id: int) -> None:
        assert self.broker is not None
        (self.broker.node_dir(node_id) / "kafka.pid").unlink(missing_ok=True)
        self.broker.up(self.nodes)

    async def _leader_of(self, topic: str, partition: int) -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            [described] = await admin.describe_topics([topic])
            return next(p["leader"] for p in described["partitions"] if p["partition"] == partition)
        finally:
            await admin.close()

    async def write_poison(self) -> None:
        """Garbage, an unknown fingerprint and a valid record with an impossible value, on
        every input topic; each tagged with an id to find it in the dead-letter topic."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, **producer_settings())
        await producer.start()
        try:
            for stream in INPUT_STREAMS:
                name = stream.record_types[0]
                valid = self._impossible_record(name)
                for kind, value in (
                    ("garbage", os.urandom(self.rng.randint(1, 40))),
                    ("unknown-fingerprint", b"\xc3\x01" + os.urandom(8) + b"\x00" * 12),
                    ("impossible-value", valid),
                ):
                    poison_id = f"{kind}-{uuid.uuid4().hex[:8]}"
                    await producer.send_and_wait(
                        stream.name,
                        value=value,
                        key=f"RMA-POISON-{poison_id}".encode(),
                        headers=[(POISON_HEADER, poison_id.encode())],
                    )
                    self.log.poison[poison_id] = stream.name
        finally:
            await producer.stop()

    def _impossible_record(self, name: str) -> bytes:
        """Decodes fine, but its envelope says attempt 0: a contract violation."""
        state = random.getstate()
        random.seed(self.rng.random())
        try:
            record = generate_one(self.codec.catalogue.get(name).wire)
        finally:
            random.setstate(state)
        record["envelope"] = new_envelope(name, "RMA-POISON", "chaos") | {"attempt": 0}
        return self.codec.encode(name, record)

    async def malformed_scans(self) -> None:
        """Until the run is done, scans that must be refused (or answered once, if repeated)."""
        url = f"{self.stack.url('inspection')}/inspections"
        headers = {"Authorization": f"Bearer {STATION_TOKENS['ST-1']}"}
        async with httpx.AsyncClient(timeout=10) as http:
            while not self.done.is_set():
                await asyncio.sleep(self.rng.uniform(0.5, 2.0))
                kind = self.rng.choice(["bad-json", "unknown-return", "wrong-state", "duplicate"])
                try:
                    status = await self._malformed_scan(http, url, headers, kind)
                except httpx.HTTPError:
                    status = "unreachable"
                self.log.malformed_scans[f"{kind}:{status}"] += 1

    async def _malformed_scan(
        self, http: httpx.AsyncClient, url: str, headers: dict, kind: str
    ) -> int:
        if kind == "bad-json":
            return (await http.post(url, content=b"{nope", headers=headers)).status_code
        candidates: list[TrackedReturn] = [t for t in self.driver.tracked if t.return_id]
        if kind == "unknown-return" or not candidates:
            body = unknown_return_scan(f"RMA-UNKNOWN-{uuid.uuid4().hex[:6]}", self.rng)
            return (await http.post(url, json=body, headers=headers)).status_code
        if kind == "wrong-state":
            waiting = [t for t in candidates if not t.collected] or candidates
            tracked = self.rng.choice(waiting)
            body = scan_body(tracked, self.rng)[1] | {"scan_id": f"WRONG-{uuid.uuid4().hex[:8]}"}
            body["station_id"] = "ST-1"
            return (await http.post(url, json=body, headers=headers)).status_code
        scanned = [t for t in candidates if t.scanned] or candidates
        tracked = self.rng.choice(scanned)
        station, body = scan_body(tracked, random.Random(tracked.index))
        token = {"Authorization": f"Bearer {STATION_TOKENS[station]}"}
        return (await http.post(url, json=body, headers=token)).status_code


def unknown_return_scan(return_id: str, rng: random.Random) -> dict[str, Any]:
    """A well-formed scan of a return no service knows."""
    return scan_request(
        f"SCAN-UNKNOWN-{rng.randint(0, 10**9)}",
        return_id,
        "ST-1",
        "I-chaos",
        [scanned_item("X", "A", 100)],
    )
