"""How long a coordinator takes to restore its sagas from the changelog (docs/scaling.md).
Never part of `make test`.

    python -m tests.bench.restore_time [--sagas 100000]

On a broker of its own: the sagas changelog is filled with `--sagas` live sagas (one real
saga awaiting inspection, made by the services' own handlers in memory, under as many
return ids, on the partitions their keys go to), then a coordinator process is started
and the time until its /health says ready is measured; then it is SIGKILLed and started
again, and measured again (the restore after a crash). Prints one JSON line with both
times, the per-100k figure, the changelog's bytes and the coordinator's RSS once restored.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer
from rich.console import Console

from services.coordinator.handlers import LiveSaga
from services.engine.partition_owners import partition_for
from services.engine.stored_value import stored_value
from services.eventing.topic_bootstrap import bootstrap_topics
from services.eventing.topics import SAGA_CHANGELOG
from services.tools.local_stack.stack import LocalStack
from services.tools.local_stack.stack_session import new_run_dir, private_broker, stop_run
from tests.bench.run_bench import REPO
from tests.bench.soak import rss_mb
from tests.support.in_memory_loop import InMemoryLoop
from tests.unit.test_handlers_loop import collect, request_return

console = Console(stderr=True)


async def one_live_saga() -> dict[str, Any]:
    """A saga awaiting inspection, as the coordinator's changelog holds it."""
    loop = InMemoryLoop()
    return_id = await request_return(loop)
    await collect(loop, return_id)
    value = loop.coordinator.sagas[return_id]
    assert isinstance(value, LiveSaga)
    return value.stored_json()


async def fill_changelog(bootstrap: str, saga: dict[str, Any], count: int) -> int:
    """`count` copies of `saga` under return ids of their own; the bytes written."""
    template = orjson.dumps(saga).decode()
    original = saga["return_id"]
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20, acks=1
    )
    await producer.start()
    written = 0
    try:
        pending = []
        for number in range(count):
            return_id = f"RMA-RESTORE-{number:08d}"
            value = stored_value(orjson.loads(template.replace(original, return_id)))
            key = orjson.dumps(return_id)
            partition = partition_for(return_id, SAGA_CHANGELOG.partitions)
            pending.append(
                await producer.send(SAGA_CHANGELOG.name, value, key=key, partition=partition)
            )
            written += len(value) + len(key)
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
                console.print(f"  {number + 1} sagas written")
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return written


def time_to_ready(stack: LocalStack, name: str) -> float:
    started = time.monotonic()
    stack.start(name)
    stack.wait_healthy([name], timeout=1800)
    return round(time.monotonic() - started, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.restore_time")
    parser.add_argument("--sagas", type=int, default=100_000)
    args = parser.parse_args(argv)
    broker = private_broker("kafka-restore", nodes=1, port_slot=10)  # wiped before and after
    bootstrap = broker.bootstrap
    work = new_run_dir("boomerang-restore-")
    stack = LocalStack(bootstrap, work, log=lambda m: console.print(f"  {m}"), supervise=False)
    try:
        asyncio.run(bootstrap_topics(bootstrap))
        saga = asyncio.run(one_live_saga())
        console.print(f"writing {args.sagas} live sagas ({saga['status']}) to the changelog ...")
        written = asyncio.run(fill_changelog(bootstrap, saga, args.sagas))
        first = time_to_ready(stack, "coordinator")
        coordinator = stack.processes["coordinator"]
        assert coordinator.process is not None
        rss = rss_mb(coordinator.process.pid)
        with httpx.Client() as http:
            sample = http.get(f"{stack.url('coordinator')}/returns/RMA-RESTORE-00000042")
        killed_at = time.monotonic()
        stack.kill("coordinator")  # SIGKILL, and started again at once
        stack.wait_healthy(["coordinator"], timeout=1800)
        after_kill = round(time.monotonic() - killed_at, 1)
    finally:
        stop_run(stack, broker)
    figures = {
        "sagas": args.sagas,
        "changelog_mb": round(written / 1e6, 1),
        "first_start_s": first,
        "restart_after_kill_s": after_kill,
        "per_100k_sagas_s": round(after_kill * 100_000 / args.sagas, 1),
        "coordinator_rss_mb": rss,
        "a_restored_saga": sample.status_code,
    }
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = REPO / "tests" / "bench" / "results" / f"{stamp}-restore.json"
    out.write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
