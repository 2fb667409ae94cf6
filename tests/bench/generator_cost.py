"""The load generator alone: its CPU per return against a fake loop, no services.

    python -m tests.bench.generator_cost [--rate 100] [--duration-s 20] [--clients aiohttp,httpx]
                                         [--connections 100]
                                         [--script OLD_GENERATOR.py]

Starts a broker of its own (wiped before and after; or uses $KAFKA_BOOTSTRAP_SERVERS), the
topics, and a fake loop process: an aiohttp app that answers as the front door and the
inspection service do (202 and a return id; 202 for a scan or a bank account) and writes
the records the generator watches, Avro-encoded with the services' headers and keys:
PickupScheduled and PickupCompleted after the request; RefundReserved, RefundIssued and
ReturnCompleted after the scan (BuyerDetailsRequested first, and the refund after the bank
account, for bank transfers and cash on delivery). Then the generator runs as its own
process, as in the bench, once per HTTP client (and once as --script, e.g. an earlier
version: `git show REV:tests/bench/load_generator.py > /tmp/old.py`). Prints one JSON
line per run: the process's CPU from the kernel (startup included) and the generator's
own figure for its run phase, per return.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer

from services.eventing.avro_codec import AvroCodec
from services.eventing.envelope import now_ms
from services.eventing.event_publisher import producer_settings, record_headers
from services.eventing.schema_catalogue import SchemaCatalogue
from services.eventing.topic_bootstrap import bootstrap_topics
from services.eventing.topics import PICKUP_EVENTS, REFUND_EVENTS, SAGA_EVENTS
from services.tools.local_stack.stack import free_port
from services.tools.local_stack.stack_session import CACHE, private_broker
from tests.support.return_events import envelope, event

REPO = Path(__file__).resolve().parents[2]
NEEDS_ACCOUNT = frozenset({"BANK_TRANSFER", "COD"})


class FakeLoop:
    """Answers the generator's requests and writes the events the loop would."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.codec = AvroCodec(SchemaCatalogue.load())
        self.payment_method: dict[str, str] = {}

    async def write(self, topic: str, name: str, record: dict[str, Any]) -> None:
        await self.producer.send(
            topic,
            value=self.codec.encode(name, record),
            key=record["envelope"]["return_id"].encode(),
            headers=record_headers(name, record),
        )

    async def request(self, request: web.Request) -> web.Response:
        body = await request.json()
        return_id = f"RMA-{uuid.uuid4().hex[:10].upper()}"
        self.payment_method[return_id] = body["payment_method"]
        for name in ("PickupScheduled", "PickupCompleted"):
            await self.write(PICKUP_EVENTS.name, name, event(name, return_id))
        return web.json_response({"return_id": return_id}, status=202)

    async def scan(self, request: web.Request) -> web.Response:
        return_id = (await request.json())["return_id"]
        if self.payment_method.get(return_id) in NEEDS_ACCOUNT:
            record = {
                "envelope": envelope("BuyerDetailsRequested", return_id),
                "needed": "refund_account",
                "deadline_at": now_ms() + 86_400_000,
            }
            await self.write(SAGA_EVENTS.name, "BuyerDetailsRequested", record)
        else:
            await self.refund(return_id)
        return web.json_response({"status": "accepted"}, status=202)

    async def bank_account(self, request: web.Request) -> web.Response:
        await request.read()
        await self.refund(request.match_info["return_id"])
        return web.json_response({"status": "accepted"}, status=202)

    async def refund(self, return_id: str) -> None:
        for name in ("RefundReserved", "RefundIssued"):
            await self.write(REFUND_EVENTS.name, name, event(name, return_id))
        completed = {
            "envelope": envelope("ReturnCompleted", return_id),
            "refunded": {"amount_minor": 4498, "currency": "EUR"},
            "completed_at": now_ms(),
        }
        await self.write(SAGA_EVENTS.name, "ReturnCompleted", completed)


async def serve_fake_loop(bootstrap: str, port: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings())
    await producer.start()
    loop = FakeLoop(producer)
    app = web.Application()
    app.router.add_post("/returns", loop.request)
    app.router.add_post("/returns/{return_id}/bank-account", loop.bank_account)
    app.router.add_post("/inspections", loop.scan)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await producer.stop()


def run_generator(
    bootstrap: str, url: str, args: argparse.Namespace, work: Path, label: str
) -> dict[str, Any]:
    """One generator run against the fake loop at `url`; its CPU figures."""
    out = work / f"generator-{label.replace('/', '_')}.json"
    common = [
        "--bootstrap",
        bootstrap,
        "--returns-url",
        url,
        "--inspection-url",
        url,
        "--rate",
        str(args.rate),
        "--warmup-s",
        str(args.warmup_s),
        "--duration-s",
        str(args.duration_s),
        "--drain-s",
        "10",
        "--out",
        str(out),
    ]
    if label.startswith("script:"):
        command = [sys.executable, label.removeprefix("script:"), *common]
    else:
        command = [sys.executable, "-m", "tests.bench.load_generator", *common]
        command += ["--http-client", label, "--connections", str(args.connections)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=REPO, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"the generator ({label}) failed: exit {process.returncode}")
    result = json.loads(out.read_text())
    process_cpu_s = usage.ru_utime + usage.ru_stime
    created, completed = result["created"], result["completed_total"]
    run_cpu_s = result.get("generator_run_cpu_s")
    return {
        "generator": label,
        "rate": args.rate,
        "created": created,
        "completed_total": completed,
        "process_cpu_s": round(process_cpu_s, 2),
        "process_cpu_ms_per_return": round(process_cpu_s * 1000 / completed, 2)
        if completed
        else None,
        "run_cpu_ms_per_return": round(run_cpu_s * 1000 / completed, 2)
        if completed and run_cpu_s is not None
        else None,
        "http_requests_per_return": round(result["http_requests"] / created, 2)
        if "http_requests" in result and created
        else None,
        "schedule_slip_ms_p99": result["schedule_slip_ms"]["p99"],
        "errors": result["errors"],
        "error_kinds": result["error_kinds"][:3],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.generator_cost")
    sub = parser.add_subparsers(dest="command")
    fake = sub.add_parser("fake-loop", help="(internal) the fake loop process")
    fake.add_argument("--bootstrap", required=True)
    fake.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--warmup-s", type=float, default=2.0)
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--clients", default="aiohttp,httpx", help="comma separated")
    parser.add_argument("--connections", type=int, default=100, help="the HTTP pool's size")
    parser.add_argument(
        "--script", action="append", default=[], help="also run this generator script (repeatable)"
    )
    args = parser.parse_args(argv)
    if args.command == "fake-loop":
        asyncio.run(serve_fake_loop(args.bootstrap, args.port))
        return 0
    broker = private_broker("kafka-generator-cost", nodes=1, port_slot=11)
    fake_loop: subprocess.Popen | None = None
    try:
        asyncio.run(bootstrap_topics(broker.bootstrap))
        port = free_port()
        fake_command = [sys.executable, "-m", "tests.bench.generator_cost", "fake-loop"]
        fake_loop = subprocess.Popen(
            [*fake_command, "--bootstrap", broker.bootstrap, "--port", str(port)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert fake_loop.stdout is not None
        if fake_loop.stdout.readline().strip() != "ready":
            raise RuntimeError("the fake loop did not start")
        (CACHE / "runs").mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="generator-cost-", dir=CACHE / "runs"))
        labels = [c for c in args.clients.split(",") if c]
        labels += [f"script:{script}" for script in args.script]
        for label in labels:
            print(
                json.dumps(
                    run_generator(broker.bootstrap, f"http://127.0.0.1:{port}", args, work, label)
                ),
                flush=True,
            )
            time.sleep(1)
    finally:
        if fake_loop is not None:
            fake_loop.terminate()
            fake_loop.wait(10)
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
