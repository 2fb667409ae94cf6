"""A soak: many returns at a steady rate with a retention of minutes, to show that state
stays bounded (docs/scaling.md). Never part of `make test`.

    python -m tests.bench.soak [--returns 100000] [--rate 120] [--retention-s 120]
                               [--instances 1] [--label NAME]

Starts a broker of its own (wiped before and after), the topics, the partner doubles and
the services with SAGA_FINISHED_RETENTION_MS, BOOMERANG_STATE_RETENTION_MS (views and
expiring tables) and INVENTORY_DEDUPE_WINDOW_MS (the ledger's remembered ids) set to the
retention, then the load generator for returns ÷ rate seconds.
While it runs, every 10 s: the returns completed (the generator's progress), each service
process's resident memory (VmRSS), and every changelog: records written, bytes on disk.
The changelogs get segment.ms 60 s and min.cleanable.dirty.ratio 0.1 here, so the log
cleaner works within the run (a deployment's defaults compact the same, later). The
figures at 10k, 50k and 100k completed returns go to tests/bench/results/<time>-soak-<label>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from rich.console import Console

from services.eventing.topic_bootstrap import bootstrap_topics
from services.eventing.topics import SAGA_CHANGELOG, SERVICE_CHANGELOGS, TopicSpec
from services.tools.local_stack.stack import LocalStack
from services.tools.local_stack.stack_session import CACHE, new_run_dir, private_broker, stop_run
from tests.bench import topic_offsets
from tests.bench.run_bench import RESULTS, ZERO_LATENCY_ENV, git_commit

console = Console(stderr=True)
SAMPLE_S = 10.0
MILESTONES = (10_000, 50_000, 100_000)
CHANGELOGS = (SAGA_CHANGELOG, *SERVICE_CHANGELOGS)
COMPACTION = {"segment.ms": "60000", "min.cleanable.dirty.ratio": "0.1"}


def rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return round(int(found.group(1)) / 1024, 1) if found else None


def rss_bands(samples: list[dict[str, Any]], from_completed: int) -> dict[str, dict[str, float]]:
    """Per process, its resident size over the samples from `from_completed` returns on: the
    lowest, the median and the highest (a single sample may catch a peak or a trough: the
    allocator hands freed memory back in steps)."""
    bands: dict[str, list[float]] = {}
    for sample in samples:
        if sample["completed"] < from_completed:
            continue
        for name, mb in sample["rss_mb"].items():
            if mb is not None:
                bands.setdefault(name, []).append(mb)
    return {
        name: {"min": min(v), "median": statistics.median(v), "max": max(v)}
        for name, v in bands.items()
    }


def changelog_bytes(data_dir: Path, topic: str) -> int:
    return sum(
        f.stat().st_size
        for partition in data_dir.glob(f"{topic}-*")
        for f in partition.iterdir()
        if f.suffix == ".log"
    )


async def compact_soon(bootstrap: str, spec: TopicSpec) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # AlterConfigs replaces a topic's whole config: the declared one, plus the cleaner's
        configs = {**spec.config(brokers=1), **COMPACTION}
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=configs)]
        )
        [described] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, spec.name)]
        )
        now = {entry[0]: entry[1] for entry in described.resources[0][4]}
        if now.get("cleanup.policy") != "compact":
            raise RuntimeError(f"{spec.name} is not compacted after the change: {now}")
    finally:
        await admin.close()


def state_entries(stack: LocalStack) -> dict[str, Any]:
    """Each service process's /health state sizes (entries per table, keys tracked)."""
    found: dict[str, Any] = {}
    for name in stack.service_processes:
        try:
            health = httpx.get(f"{stack.url(name)}/health", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            continue
        found[name] = {**health.get("state_entries", {}), "keys": health.get("keys_tracked")}
    return found


class Progress:
    """The load generator's progress lines, read as they come ("completed N")."""

    def __init__(self, generator: subprocess.Popen[str]) -> None:
        self.completed = 0
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(generator,), daemon=True)
        self.thread.start()

    def _read(self, generator: subprocess.Popen[str]) -> None:
        assert generator.stderr is not None
        for line in generator.stderr:
            self.lines.append(line.rstrip())
            if found := re.search(r"completed (\d+)", line):
                self.completed = int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.soak")
    parser.add_argument("--returns", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=120.0)
    parser.add_argument("--retention-s", type=float, default=120.0)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--label", default="soak")
    args = parser.parse_args(argv)
    broker = private_broker("kafka-soak", nodes=1, port_slot=9)  # wiped before and after
    bootstrap = broker.bootstrap
    data_dir = next((CACHE / "kafka-soak").rglob("meta.properties")).parent
    work = new_run_dir("boomerang-soak-")
    retention_ms = str(int(args.retention_s * 1000))
    stack = LocalStack(
        bootstrap,
        work,
        carrier_callback_delay_ms=0,
        extra_env={
            **ZERO_LATENCY_ENV,
            "SAGA_FINISHED_RETENTION_MS": retention_ms,
            "BOOMERANG_STATE_RETENTION_MS": retention_ms,
            "INVENTORY_DEDUPE_WINDOW_MS": retention_ms,
        },
        log=lambda m: console.print(f"  {m}"),
        instances=args.instances,
    )
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        asyncio.run(bootstrap_topics(bootstrap))
        for changelog in CHANGELOGS:
            asyncio.run(compact_soon(bootstrap, changelog))
        stack.start_all()
        duration = args.returns / args.rate
        console.print(
            f"soak: {args.returns} returns at {args.rate:g}/s ({duration:.0f} s), "
            f"finished sagas archived and views forgotten after {args.retention_s:g} s"
        )
        generator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.bench.load_generator",
                "--bootstrap",
                bootstrap,
                "--returns-url",
                ",".join(stack.url(n) for n in stack.instances_of("returns")),
                "--inspection-url",
                ",".join(stack.url(n) for n in stack.instances_of("inspection")),
                "--rate",
                str(args.rate),
                "--warmup-s",
                "0",
                "--duration-s",
                str(duration),
                "--drain-s",
                "120",
                "--out",
                str(work / "soak-generator.json"),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        progress = Progress(generator)
        while generator.poll() is None:
            time.sleep(SAMPLE_S)
            offsets = asyncio.run(topic_offsets.end_offsets(bootstrap))
            sample = {
                "t_s": round(time.monotonic() - started, 1),
                "completed": progress.completed,
                "rss_mb": {
                    name: rss_mb(managed.process.pid)
                    for name, managed in stack.processes.items()
                    if managed.process is not None and managed.running
                },
                "sagas_changelog_records": sum(offsets.get(SAGA_CHANGELOG.name, {}).values()),
                "sagas_changelog_bytes": changelog_bytes(data_dir, SAGA_CHANGELOG.name),
                "state_entries": state_entries(stack),
                "changelog_bytes": {c.name: changelog_bytes(data_dir, c.name) for c in CHANGELOGS},
            }
            samples.append(sample)
            console.print(
                f"  {sample['t_s']:>6.0f} s  completed {sample['completed']:>6}  RSS MB "
                + " ".join(f"{n} {mb}" for n, mb in sample["rss_mb"].items())
                + f"  changelogs {sum(sample['changelog_bytes'].values()) / 1e6:.1f} MB"
            )
        result = json.loads((work / "soak-generator.json").read_text())
    finally:
        stop_run(stack, broker)
    # the first sample within 1 % of a milestone (a run ends with the last returns in flight)
    at = {
        str(milestone): next((s for s in samples if s["completed"] >= 0.99 * milestone), None)
        for milestone in MILESTONES
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report = {
        "git_commit": git_commit(),
        "settings": vars(args),
        "completed_total": result.get("completed_total"),
        "completed_per_s": result.get("completed_per_s"),
        # a soak offers what the machine carries: a refusal here is admission misjudging
        "refused": result.get("refused"),
        "accepted_within_target_share": result.get("accepted_within_target_share"),
        "at_completed": at,
        "rss_band_mb": rss_bands(samples, MILESTONES[0]),
        "samples": samples,
        "wall_s": round(time.monotonic() - started, 1),
    }
    out = RESULTS / f"{stamp}-soak-{args.label}.json"
    out.write_text(json.dumps(report, indent=1))
    console.print(f"results: {out}")
    print(
        json.dumps(
            {k: report[k] for k in ("completed_total", "completed_per_s", "refused", "rss_band_mb")}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
