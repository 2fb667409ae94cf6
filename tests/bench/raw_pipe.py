"""The ceiling: the same hops as one return through Boomerang, done by a bare aiokafka
pipe on the same broker — consume → decode → encode → produce, nothing else.

Each hop is its own process (as each Boomerang service is), with the producer settings the
services use (acks=all, idempotence, linger 5 ms) and the record the loop writes at that
hop (same schema, same size), keyed by return. Hop 0 is written by the injector (the front
door's ReturnRequested), hop i (1 ≤ i < H) by stage i, which reads hop i - 1's topic. The
pipe's throughput in returns/s is N returns / (last record at the sink − first injected).

    python -m tests.bench.raw_pipe stage --bootstrap B --hop i --run R --samples F
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.eventing.avro_codec import AvroCodec
from services.eventing.event_publisher import producer_settings
from services.eventing.schema_catalogue import SchemaCatalogue
from services.eventing.topics import PARTITIONS


def topic_of_hop(run: str, hop: int) -> str:
    return f"boomerang.bench.raw.{run}.hop{hop}"


async def stage(bootstrap: str, hop: int, run: str, samples: list[str]) -> None:
    codec = AvroCodec(SchemaCatalogue.load())
    outgoing = codec.decode(bytes.fromhex(samples[hop]))
    consumer = AIOKafkaConsumer(
        topic_of_hop(run, hop - 1),
        bootstrap_servers=bootstrap,
        group_id=f"bench-raw-{run}-{hop}",
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
    out_topic = topic_of_hop(run, hop)
    while True:
        batches = await consumer.getmany(timeout_ms=200, max_records=500)
        pending = []
        for messages in batches.values():
            for message in messages:
                codec.decode(message.value)
                value = codec.encode(outgoing.name, outgoing.record)
                pending.append(await producer.send(out_topic, value=value, key=message.key))
        if pending:
            await asyncio.gather(*pending)


async def _create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
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
    bootstrap: str, run: str, hops: int, first_value: bytes, returns: int, timeout_s: float
) -> dict[str, Any]:
    sink = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await sink.start()
    last_topic = topic_of_hop(run, hops - 1)
    partitions = [TopicPartition(last_topic, p) for p in range(PARTITIONS)]
    sink.assign(partitions)
    await sink.seek_to_beginning(*partitions)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings())
    await producer.start()
    seen = 0
    started = time.monotonic()
    try:
        futures = [
            await producer.send(topic_of_hop(run, 0), value=first_value, key=f"raw-{i}".encode())
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
    samples: list[bytes],
    returns: int,
    work_dir: Path,
    timeout_s: float = 60.0,
    log: Any = print,
) -> dict[str, Any]:
    """Run the pipe once with `returns` returns through len(samples) hops; its figures."""
    run = str(int(time.time()))
    hops = len(samples)
    names = [topic_of_hop(run, hop) for hop in range(hops)]
    asyncio.run(_create_topics(bootstrap, names))
    samples_file = work_dir / f"raw-samples-{run}.json"
    samples_file.write_text(json.dumps([value.hex() for value in samples]))
    stages = []
    try:
        for hop in range(1, hops):
            stages.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.bench.raw_pipe",
                        "stage",
                        "--bootstrap",
                        bootstrap,
                        "--hop",
                        str(hop),
                        "--run",
                        run,
                        "--samples",
                        str(samples_file),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for process in stages:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a raw pipe stage did not start (exit {process.poll()})")
        log(f"  raw pipe: {hops - 1} stage processes ready; injecting {returns} returns")
        figures = asyncio.run(
            _inject_and_time(bootstrap, run, hops, samples[0], returns, timeout_s)
        )
    finally:
        for process in stages:
            process.terminate()
        for process in stages:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        asyncio.run(_delete_topics(bootstrap, names))
    figures["record_bytes"] = [len(value) for value in samples]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.raw_pipe")
    sub = parser.add_subparsers(dest="command", required=True)
    stage_args = sub.add_parser("stage")
    stage_args.add_argument("--bootstrap", required=True)
    stage_args.add_argument("--hop", type=int, required=True)
    stage_args.add_argument("--run", required=True)
    stage_args.add_argument("--samples", type=Path, required=True)
    args = parser.parse_args(argv)
    samples = json.loads(args.samples.read_text())
    try:
        asyncio.run(stage(args.bootstrap, args.hop, args.run, samples))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
