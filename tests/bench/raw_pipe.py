"""The ceiling: the loop's record budget pushed through a bare aiokafka pipe on the same
broker — consume → produce, nothing else.

The budget is a list of records per return (bench_figures.record_budget of a measured
level, or bench_figures.TARGET_RECORD_BUDGET): events and commands, then state
(changelog) records, each with the size the loop writes (key + value + headers). The
events form a chain: hop 0 is written by the injector, hop i (1 ≤ i < E) by the stage
that consumes hop i - 1's record, keyed by return, each hop on a topic of its own. The
state records are written by the stages next to the events, as a service writes its state
while handling an event (compacted topics, nobody reads them). The stages run in as many
processes as the loop has services (fewer when there are fewer hops), each consuming the
topics of its hops in one consumer group (fan-in, offsets committed as the services do)
with the producer settings the services use (services.eventing.event_publisher). The
pipe's throughput in returns/s is N returns / (last record at the sink − first injected).

    python -m tests.bench.raw_pipe stage --bootstrap B --run R --plan F --stage k
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.eventing.event_publisher import producer_settings
from services.eventing.topics import PARTITIONS
from tests.bench.bench_figures import budget_totals, pipe_plan

KEY_BYTES = 14  # as a return id: RMA- and 10 characters
HEADERS = [("event_type", b"RawPipeRecord"), ("event_id", b"0" * 36)]
HEADER_BYTES = sum(len(name) + len(value) for name, value in HEADERS)


def key_of(index: int) -> bytes:
    return f"RAW-{index:010d}".encode()


def value_of(record_bytes: int) -> bytes:
    """A value that makes the whole record (key + value + headers) `record_bytes` long."""
    return os.urandom(max(1, record_bytes - KEY_BYTES - HEADER_BYTES))


def event_topic(run: str, hop: int) -> str:
    return f"boomerang.bench.raw.{run}.hop{hop}"


def state_topic(run: str, label: str) -> str:
    return f"boomerang.bench.raw.{run}.state.{label}"


async def stage(bootstrap: str, run: str, plan: dict[str, Any], stage_index: int) -> None:
    """Consume the topics before this stage's hops; for each record write the next hop's
    record and the state records of that hop, with the record's key."""
    hops: list[int] = plan["stages"][stage_index]
    next_hop = {event_topic(run, hop - 1): hop for hop in hops}
    values = {hop: value_of(plan["events"][hop]) for hop in hops}
    states = {
        hop: [
            (state_topic(run, record["label"]), value_of(record["bytes"]))
            for record in plan["state_at"][str(hop)]
        ]
        for hop in hops
    }
    consumer = AIOKafkaConsumer(
        *next_hop,
        bootstrap_servers=bootstrap,
        group_id=f"bench-raw-{run}-{stage_index}",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        auto_commit_interval_ms=1000,
        max_poll_records=500,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings())
    await producer.start()
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=200)
    print("ready", flush=True)
    while True:
        batches = await consumer.getmany(timeout_ms=200, max_records=500)
        pending = []
        for tp, messages in batches.items():
            hop = next_hop[tp.topic]
            out_topic = event_topic(run, hop)
            for message in messages:
                pending.append(
                    await producer.send(
                        out_topic, value=values[hop], key=message.key, headers=HEADERS
                    )
                )
                for topic, value in states[hop]:
                    pending.append(
                        await producer.send(topic, value=value, key=message.key, headers=HEADERS)
                    )
        if pending:
            await asyncio.gather(*pending)


async def _create_topics(bootstrap: str, events: list[str], states: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        compacted = {"cleanup.policy": "compact"}
        await admin.create_topics(
            [NewTopic(n, PARTITIONS, 1) for n in events]
            + [NewTopic(n, PARTITIONS, 1, topic_configs=compacted) for n in states]
        )
    finally:
        await admin.close()


async def _delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


async def _inject_and_time(
    bootstrap: str, run: str, plan: dict[str, Any], returns: int, timeout_s: float
) -> dict[str, Any]:
    hops = len(plan["events"])
    sink = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await sink.start()
    last_topic = event_topic(run, hops - 1)
    partitions = [TopicPartition(last_topic, p) for p in range(PARTITIONS)]
    sink.assign(partitions)
    await sink.seek_to_beginning(*partitions)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings())
    await producer.start()
    first_value = value_of(plan["events"][0])
    seen = 0
    started = time.monotonic()
    try:
        futures = [
            await producer.send(
                event_topic(run, 0), value=first_value, key=key_of(i), headers=HEADERS
            )
            for i in range(returns)
        ]
        await asyncio.gather(*futures)
        injected_s = time.monotonic() - started
        deadline = started + timeout_s
        while seen < returns and time.monotonic() < deadline:
            batches = await sink.getmany(timeout_ms=200, max_records=5000)
            seen += sum(len(m) for m in batches.values())
        elapsed = time.monotonic() - started
    finally:
        await producer.stop()
        await sink.stop()
    return {
        "returns": returns,
        "through": seen,
        "hops": hops,
        "inject_s": round(injected_s, 2),
        "elapsed_s": round(elapsed, 2),
        "returns_per_s": round(seen / elapsed, 1) if elapsed else 0.0,
    }


def run_raw_pipe(
    bootstrap: str,
    budget: list[dict[str, Any]],
    returns: int,
    work_dir: Path,
    processes: int,
    timeout_s: float = 90.0,
    log: Any = print,
) -> dict[str, Any]:
    """Run the pipe once with `returns` returns, each costing the records of `budget`
    (written by `processes` stage processes); its figures."""
    run = str(int(time.time()))
    plan = pipe_plan(budget, processes)
    events = [event_topic(run, hop) for hop in range(len(plan["events"]))]
    states = [state_topic(run, label) for label in plan["state_labels"]]
    asyncio.run(_create_topics(bootstrap, events, states))
    plan_file = work_dir / f"raw-plan-{run}.json"
    plan_file.write_text(json.dumps(plan))
    stages = []
    stages_cpu_s = 0.0
    try:
        for index in range(len(plan["stages"])):
            stages.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.bench.raw_pipe",
                        "stage",
                        "--bootstrap",
                        bootstrap,
                        "--run",
                        run,
                        "--plan",
                        str(plan_file),
                        "--stage",
                        str(index),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for process in stages:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a raw pipe stage did not start (exit {process.poll()})")
        log(
            f"  raw pipe: {len(stages)} stage processes ready; injecting {returns} returns of "
            f"{len(budget)} records each"
        )
        figures = asyncio.run(_inject_and_time(bootstrap, run, plan, returns, timeout_s))
    finally:
        for process in stages:
            process.terminate()
        for process in stages:
            stages_cpu_s += _reap(process)
        asyncio.run(_delete_topics(bootstrap, events + states))
    totals = budget_totals(budget)
    figures["record_bytes"] = plan["events"]
    figures["records_per_return"] = totals["records"]
    figures["state_records_per_return"] = totals["state_records"]
    figures["kb_per_return"] = totals["kb"]
    figures["stage_processes"] = len(stages)
    figures["stages_cpu_s"] = round(stages_cpu_s, 2)
    figures["producer_settings"] = producer_settings()
    return figures


def _reap(process: subprocess.Popen) -> float:
    """Wait for a stopped stage (killing it after 10 s); the CPU seconds it used."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        time.sleep(0.05)
    process.kill()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.raw_pipe")
    sub = parser.add_subparsers(dest="command", required=True)
    stage_args = sub.add_parser("stage")
    stage_args.add_argument("--bootstrap", required=True)
    stage_args.add_argument("--run", required=True)
    stage_args.add_argument("--plan", type=Path, required=True)
    stage_args.add_argument("--stage", type=int, required=True)
    args = parser.parse_args(argv)
    plan = json.loads(args.plan.read_text())
    try:
        asyncio.run(stage(args.bootstrap, args.run, plan, args.stage))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
