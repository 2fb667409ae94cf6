"""`make chaos`: returns flowing through real processes while everything goes wrong.

    python -m services.tools.local_stack.chaos [--returns M] [--seed S] [--nodes 1|3]

On a broker of its own (a fresh cluster: 1 node, or 3 with NODES=3) it drives M returns and
meanwhile, from a seeded plan:
- SIGKILLs a random service every few seconds and restarts it (every service at least twice);
- stops and restarts the broker (or, with 3 nodes, kills a partition leader and brings it back);
- makes the PSP and the carrier fail transiently and permanently;
- posts malformed scans and writes poison records onto every input topic;
and at the end replays: the coordinator's, refund's and intake's consumer groups are reset to
the earliest offsets and reprocess everything. Then it checks the invariants and prints one
JSON line; the exit code is non-zero if any fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata
from fastavro.utils import generate_one
from rich.console import Console

from services.decisions.saga import CONSUMED_EVENTS
from services.eventing.avro_codec import AvroCodec, CodecError
from services.eventing.envelope import new_envelope
from services.eventing.event_publisher import producer_settings
from services.eventing.log_setup import FRAMEWORK_LOGGERS, RepeatedMessageFilter
from services.eventing.schema_catalogue import SchemaCatalogue
from services.eventing.topic_bootstrap import bootstrap_topics
from services.eventing.topics import (
    INSPECTION_EVENTS,
    INTAKE_COMMANDS,
    INTAKE_EVENTS,
    PICKUP_EVENTS,
    REFUND_COMMANDS,
    REFUND_EVENTS,
    RETURNS_EVENTS,
    SAGA_EVENTS,
    STOCK_MOVEMENTS,
    STREAMS,
    dead_letter_topic,
)
from services.tools.local_kafka.broker import LocalKafka, LocalKafkaSettings, default_base_port
from services.tools.local_stack.demo import LoopDriver, TrackedReturn, scan_body
from services.tools.local_stack.orphan_reaper import reap_children_if_i_die
from services.tools.local_stack.stack import PAYMENT_PROVIDERS, SERVICES, STATION_TOKENS, LocalStack
from services.tools.oncall.topic_reader import read_topic

console = Console(stderr=True)
POISON_HEADER = "chaos.poison-id"
RANDOM_KILLS_S = 240.0  # how long services are killed at random (a good run drives ~150 s)
# Topics some service consumes (support tickets go to people, not to a consumer of ours).
INPUT_STREAMS = tuple(s for s in STREAMS if s.name != "boomerang.support.tickets")
COORDINATOR_INPUTS = (
    RETURNS_EVENTS,
    PICKUP_EVENTS,
    INSPECTION_EVENTS,
    INTAKE_EVENTS,
    REFUND_EVENTS,
    SAGA_EVENTS,
)
REPLAYED = {
    "boomerang-coordinator": COORDINATOR_INPUTS,
    "boomerang-refund": (REFUND_COMMANDS,),
    "boomerang-warehouse-intake": (INTAKE_COMMANDS, STOCK_MOVEMENTS),
}
# Deadlines short enough that a stuck step resolves within a run.
SAGA_ENV = {
    "SAGA_MAX_TRIES": "6",
    "SAGA_BACKOFF_BASE_MS": "500",
    "SAGA_BACKOFF_CAP_MS": "5000",
    "SAGA_BOOKING_DEADLINE_MS": "20000",
    "SAGA_COLLECTION_DEADLINE_MS": "60000",
    "SAGA_INSPECTION_DEADLINE_MS": "300000",
    "SAGA_INTAKE_DEADLINE_MS": "20000",
    "SAGA_REFUND_DEADLINE_MS": "20000",
    "SAGA_SETTLEMENT_DEADLINE_MS": "60000",
    "SAGA_COMPENSATION_DEADLINE_MS": "20000",
    "SAGA_EXCHANGE_DEADLINE_MS": "20000",
    "SAGA_BUYER_DETAILS_DEADLINE_MS": "120000",
    "BOOMERANG_RETRY_ATTEMPTS": "3",
}


@dataclass
class ChaosLog:
    kills: Counter = field(default_factory=Counter)
    broker_restarts: int = 0
    poison: dict[str, str] = field(default_factory=dict)  # poison id -> topic
    malformed_scans: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)


class ChaosRun:
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
        plan = [*SERVICES, *SERVICES]
        self.rng.shuffle(plan)
        stop_at = time.monotonic() + RANDOM_KILLS_S
        while plan or not (self.done.is_set() or self.in_the_tail() or time.monotonic() > stop_at):
            await asyncio.sleep(interval_s * self.rng.uniform(0.7, 1.3))
            name = plan.pop() if plan else self.rng.choice(SERVICES)
            console.print(f"  [chaos] SIGKILL {name}")
            self.log.kills[name] += 1
            await asyncio.to_thread(self.stack.kill, name)  # the supervisor restarts it
        await asyncio.to_thread(self.stack.wait_healthy, list(SERVICES), 180.0)

    def in_the_tail(self) -> bool:
        tracked = self.driver.tracked
        return sum(bool(t.terminal) for t in tracked) >= 0.95 * len(tracked)

    async def restart_broker(self, after_s: float) -> None:
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
            body, _ = _scan_for(f"RMA-UNKNOWN-{uuid.uuid4().hex[:6]}", self.rng)
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


def _scan_for(return_id: str, rng: random.Random) -> tuple[dict[str, Any], str]:
    body = {
        "scan_id": f"SCAN-UNKNOWN-{rng.randint(0, 10**9)}",
        "return_id": return_id,
        "station_id": "ST-1",
        "inspector_id": "I-chaos",
        "items": [
            {
                "sku": "X",
                "serial": None,
                "grade": "A",
                "matches_order": True,
                "measured_weight_grams": 100,
                "expected_weight_grams": None,
                "notes": "",
                "photo_refs": [],
            }
        ],
    }
    return body, "ST-1"


# ---------------------------------------------------------------- replay


async def wait_until_group_empty(bootstrap: str, group: str, timeout_s: float = 90) -> None:
    """A stopped static member leaves the group only when its session times out."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            [described] = await admin.describe_consumer_groups([group])
            state = described.groups[0][2] if hasattr(described, "groups") else "Unknown"
            if state in ("Empty", "Dead"):
                return
            await asyncio.sleep(1)
        raise RuntimeError(f"consumer group {group} still has members after {timeout_s:.0f}s")
    finally:
        await admin.close()


async def rewind_group(bootstrap: str, group: str, topics: tuple) -> int:
    """Commit offset 0 for every partition of `topics` in `group`; returns the records ahead."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(t.name, p) for t in topics for p in range(t.partitions)]
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit(
            {tp: OffsetAndMetadata(starts[tp], "chaos replay") for tp in partitions}
        )
        return sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        await consumer.stop()


async def group_lag(bootstrap: str, group: str, topics: tuple) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        partitions = [TopicPartition(t.name, p) for t in topics for p in range(t.partitions)]
        ends = await consumer.end_offsets(partitions)
        return sum(ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in partitions)
    finally:
        await consumer.stop()
        await admin.close()


# ---------------------------------------------------------------- checks


async def saga_views(stack: LocalStack, return_ids: list[str]) -> dict[str, dict[str, Any]]:
    views: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=20)) as http:
        semaphore = asyncio.Semaphore(20)

        async def fetch(return_id: str) -> None:
            async with semaphore:
                response = await http.get(f"{stack.url('coordinator')}/returns/{return_id}")
                if response.status_code == 200:
                    views[return_id] = response.json()

        await asyncio.gather(*(fetch(r) for r in return_ids))
    return views


async def partner_figures(stack: LocalStack) -> tuple[list[dict], dict[str, Any]]:
    async with httpx.AsyncClient(timeout=60) as http:
        refunds = [
            refund
            for provider in PAYMENT_PROVIDERS
            for refund in (await http.get(f"{stack.url(provider)}/refunds")).json()["refunds"]
        ]
        deadline = time.monotonic() + 120
        while True:  # 503 while the ledger table is recovering: its figures would be partial
            answer = await http.get(f"{stack.url('warehouse-intake')}/ledger")
            if answer.status_code != 503 or time.monotonic() > deadline:
                answer.raise_for_status()
                return refunds, answer.json()
            await asyncio.sleep(1)


async def wait_until_consumed(bootstrap: str, timeout_s: float = 120) -> None:
    """Every replayed group has caught up (the ledger books a movement after the saga ends)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lags = [await group_lag(bootstrap, g, t) for g, t in REPLAYED.items()]
        if sum(lags) == 0:
            return
        await asyncio.sleep(2)
    console.print(f"  consumers still behind after {timeout_s:.0f}s")


def money_moved(refunds: list[dict], ours: set[str]) -> Counter:
    return Counter(
        r["return_id"]
        for r in refunds
        if r["return_id"] in ours and r["status"] in ("succeeded", "pending")
    )


async def lost_events(bootstrap: str, codec: AvroCodec, views: dict[str, dict]) -> list[dict]:
    """Events the coordinator should have consumed but whose id is in no saga's history."""
    seen = {h["event_id"] for view in views.values() for h in view["history"]}
    lost = []
    for topic in COORDINATOR_INPUTS:
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


# ---------------------------------------------------------------- the run


async def run_chaos(run: ChaosRun, kill_interval_s: float, settle_timeout_s: float) -> dict:
    stack, bootstrap = run.stack, run.bootstrap
    await run.configure_partner_faults()
    started = time.monotonic()
    driving = asyncio.create_task(run.driver.run(timeout_s=settle_timeout_s))
    chaos = [
        asyncio.create_task(run.kill_services(kill_interval_s)),
        asyncio.create_task(run.restart_broker(after_s=kill_interval_s * 3)),
        asyncio.create_task(run.malformed_scans()),
        asyncio.create_task(run.write_poison()),
    ]
    await driving
    run.done.set()
    await asyncio.gather(*chaos, return_exceptions=True)
    drive_s = time.monotonic() - started
    return_ids = [t.return_id for t in run.driver.tracked if t.return_id]
    ours = set(return_ids)

    # settle: every saga terminal (timers resolve what chaos left hanging)
    deadline = time.monotonic() + settle_timeout_s
    while True:
        views = await saga_views(stack, return_ids)
        stuck = [r for r in return_ids if not views.get(r, {}).get("terminal")]
        if not stuck or time.monotonic() > deadline:
            break
        console.print(f"  settling: {len(stuck)} returns not terminal yet")
        await asyncio.sleep(5)

    await wait_until_consumed(bootstrap)
    refunds_before, ledger_before = await partner_figures(stack)

    # replay: stop the consumers, rewind their groups, let them reprocess everything
    console.print(
        "replay: rewinding coordinator, refund and warehouse-intake to the earliest offsets"
    )
    for name in ("coordinator", "refund", "warehouse-intake"):
        await asyncio.to_thread(stack.stop, name)
    replayed = 0
    for group, topics in REPLAYED.items():
        await wait_until_group_empty(bootstrap, group)
        replayed += await rewind_group(bootstrap, group, topics)
    for name in ("coordinator", "refund", "warehouse-intake"):
        stack.start(name)
    await asyncio.to_thread(stack.wait_healthy, ["coordinator", "refund", "warehouse-intake"])
    await wait_until_consumed(bootstrap, timeout_s=180)
    await asyncio.sleep(5)  # let any effect of the replay land
    refunds_after, ledger_after = await partner_figures(stack)

    views = await saga_views(stack, return_ids)
    terminal = [r for r in return_ids if views.get(r, {}).get("terminal")]
    paid = money_moved(refunds_after, ours)
    expected_refunds = sum(
        1
        for v in views.values()
        if (v.get("refund") or {}).get("status") in ("SUCCEEDED", "PENDING")
    )
    dlq_total, poison_found = await dead_letters(bootstrap)
    lost = await lost_events(bootstrap, run.codec, views)
    evidence = run.stack.run_dir  # what a failed run leaves to diagnose it (the broker is wiped)
    (evidence / "sagas.json").write_text(json.dumps(views, indent=1, sort_keys=True))
    (evidence / "lost-events.json").write_text(json.dumps(lost, indent=1))
    for item in lost[:5]:
        console.print(f"  lost: {item}")
    movements_expected = expected_movements(views)
    statuses = Counter(v["status"] for v in views.values())
    summary = {
        "returns": len(run.driver.tracked),
        "terminal": len(terminal),
        "stuck": len(return_ids)
        - len(terminal)
        + sum(1 for t in run.driver.tracked if not t.return_id),
        "completed": statuses.get("COMPLETED", 0),
        "refunds_expected": expected_refunds,
        "refunds_at_psp": len(paid),
        "double_refunds": sum(1 for count in paid.values() if count > 1),
        "double_stock_moves": max(0, ledger_after["movements_applied"] - movements_expected),
        "lost_events": len(lost),
        "dlq_records": dlq_total,
        "poison_written": len(run.log.poison),
        "poison_in_dlq": len(set(run.log.poison) & poison_found),
        "kills": sum(run.log.kills.values()),
        "crash_restarts": sum(stack.restarts.values()),
        "broker_restarts": run.log.broker_restarts,
        "replayed_records": replayed,
        "replay_new_refunds": sum(money_moved(refunds_after, ours).values())
        - sum(money_moved(refunds_before, ours).values()),
        "replay_new_stock_moves": ledger_after["movements_applied"]
        - ledger_before["movements_applied"],
        "statuses": dict(statuses),
        "reasons": dict(
            Counter(
                (v.get("outcome") or {}).get("reason", "")[:60]
                for v in views.values()
                if v["status"] != "COMPLETED"
            ).most_common(6)
        ),
        "drive_s": round(drive_s, 1),
        "seed": run.seed,
    }
    if lost:
        console.print(f"  lost events (first 5): {lost[:5]}")
    console.print(f"  kills per service: {dict(run.log.kills)}")
    console.print(f"  malformed scans: {dict(run.log.malformed_scans)}")
    return summary


def invariants(summary: dict[str, Any]) -> list[str]:
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
    ):
        if summary[key]:
            failures.append(f"{key} = {summary[key]}")
    if summary["poison_in_dlq"] != summary["poison_written"]:
        failures.append("not every poison record reached a dead-letter topic")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.tools.local_stack.chaos")
    parser.add_argument("--returns", type=int, default=int(os.environ.get("M") or 1000))
    parser.add_argument(
        "--seed", type=int, default=int(os.environ.get("SEED") or time.time_ns() % 100_000)
    )
    parser.add_argument("--nodes", type=int, default=int(os.environ.get("NODES") or 1))
    parser.add_argument("--kill-interval", type=float, default=None, help="seconds between kills")
    parser.add_argument("--settle-timeout", type=float, default=420.0)
    args = parser.parse_args(argv)
    console.print(f"chaos: {args.returns} returns, seed {args.seed}, {args.nodes} broker node(s)")
    library_lines = logging.StreamHandler(sys.stderr)  # the runner's own Kafka clients
    library_lines.setFormatter(logging.Formatter("  %(name)s: %(message)s"))
    library_lines.addFilter(RepeatedMessageFilter(FRAMEWORK_LOGGERS, window_s=10.0))
    logging.basicConfig(level=logging.WARNING, handlers=[library_lines])
    started = time.monotonic()

    reap_children_if_i_die()  # a killed runner leaves no broker or service behind
    broker: LocalKafka | None = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    cache = Path(__file__).resolve().parents[3] / ".cache"
    if not bootstrap:  # a cluster of its own, wiped at the end: counts are exact
        settings = LocalKafkaSettings.from_env(log=lambda m: console.print(f"  {m}"))
        settings = LocalKafkaSettings(
            version=settings.version,
            base_port=default_base_port() + 8 * (2 + args.nodes),
            run_dir=cache / f"kafka-chaos-{args.nodes}",
            cache_dir=settings.cache_dir,
            heap="384m" if args.nodes == 3 else settings.heap,
            log=settings.log,
        )
        broker = LocalKafka(settings)
        broker.down(wipe=True)
        bootstrap = broker.up(nodes=args.nodes, timeout=180)
    (cache / "runs").mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="boomerang-chaos-", dir=cache / "runs"))
    stack = LocalStack(
        bootstrap, run_dir, extra_env=SAGA_ENV, log=lambda m: console.print(f"  {m}")
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        report = asyncio.run(bootstrap_topics(bootstrap))
        console.print(f"topics: {report.lines()[0]}")
        stack.start_all()
        run = ChaosRun(stack, broker, bootstrap, args.nodes, args.returns, args.seed)
        interval = args.kill_interval or max(5.0, min(8.0, args.returns / 120))
        summary = asyncio.run(run_chaos(run, interval, args.settle_timeout))
        summary["wall_s"] = round(time.monotonic() - started, 1)
        failures = invariants(summary)
        for failure in failures:
            console.print(f"[red]INVARIANT FAILED[/red] {failure}")
        console.print(f"logs: {run_dir / 'logs'}")
        print(json.dumps(summary), flush=True)
        return 1 if failures else 0
    finally:
        stack.stop_all()
        if broker is not None:
            broker.down(wipe=True)


if __name__ == "__main__":
    sys.exit(main())
