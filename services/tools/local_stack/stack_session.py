"""What every local-stack run does around its work: the broker, the run directory, the
topics and processes, and stopping what it started (also on SIGTERM or failure).

`make demo` uses this checkout's broker (`checkout_broker`); the chaos run a cluster of
its own, wiped before and after (`private_broker`). KAFKA_BOOTSTRAP_SERVERS overrides both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from services.eventing.topic_bootstrap import bootstrap_topics
from services.tools.local_kafka.broker import LocalKafka
from services.tools.local_kafka.cluster_settings import (
    PORTS_PER_SLOT,
    REPO_ROOT,
    LocalKafkaSettings,
    default_base_port,
)
from services.tools.local_stack.orphan_reaper import reap_children_if_i_die
from services.tools.local_stack.stack import LocalStack

console = Console(stderr=True)
CACHE = REPO_ROOT / ".cache"


def log_indented(message: str) -> None:
    """The progress lines of the broker and the processes, indented under the run's own."""
    console.print(f"  {message}")


@dataclass
class RunBroker:
    """The cluster a run talks to, and the broker it stops at the end if it started one."""

    bootstrap: str
    started: LocalKafka | None = None  # ours to stop; None: an external or already running one
    wipe: bool = False  # delete its data when stopping it

    def stop(self) -> bool:
        """Stop the broker this run started; whether there was one."""
        if self.started is None:
            return False
        self.started.down(wipe=self.wipe)
        return True


def checkout_broker() -> RunBroker:
    """KAFKA_BOOTSTRAP_SERVERS, else this checkout's local broker: used as it is if it runs,
    else started (and then stopped at the end). Like `private_broker`, it first sees to it
    that a killed runner leaves no broker or service behind."""
    reap_children_if_i_die()  # a killed runner leaves no broker or service behind
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        return RunBroker(bootstrap)
    broker = LocalKafka(LocalKafkaSettings.from_env(log=log_indented))
    already = any(s.running for s in broker.statuses())
    console.print("starting Kafka ..." if not already else "using the running local broker")
    bootstrap = broker.up(nodes=broker.formatted_nodes() or 1)
    return RunBroker(bootstrap, None if already else broker)


def private_broker(
    name: str, nodes: int, port_slot: int, heap: str | None = None, timeout: float = 180
) -> RunBroker:
    """KAFKA_BOOTSTRAP_SERVERS, else a cluster of its own in .cache/`name`, `port_slot`
    slots above this checkout's ports, wiped before and after: counts on it are exact."""
    reap_children_if_i_die()  # a killed runner leaves no broker or service behind
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        return RunBroker(bootstrap)
    defaults = LocalKafkaSettings.from_env(log=log_indented)
    broker = LocalKafka(
        dataclasses.replace(
            defaults,
            base_port=default_base_port() + PORTS_PER_SLOT * port_slot,
            run_dir=CACHE / name,
            heap=heap or defaults.heap,
        )
    )
    broker.down(wipe=True)
    return RunBroker(broker.up(nodes=nodes, timeout=timeout), broker, wipe=True)


def new_run_dir(prefix: str) -> Path:
    """A fresh directory under .cache/runs for the processes' logs and state."""
    runs = CACHE / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=runs))


def local_stack(
    bootstrap: str,
    run_dir: Path,
    extra_env: dict[str, str] | None = None,
    instances: int = 1,
    database_url: str | None = None,
) -> LocalStack:
    """The run's partner doubles and services, `instances` processes of each service, and
    settlement on `database_url` when given, reading from now (not started yet). From now
    on a SIGTERM exits through the caller's `finally`, which must call `stop_run`."""
    stack = LocalStack(
        bootstrap,
        run_dir,
        extra_env=extra_env or {},
        log=log_indented,
        instances=instances,
        database_url=database_url,
        ledger_start_ms=int(time.time() * 1000) if database_url else None,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return stack


def create_topics(bootstrap: str) -> None:
    """Create the declared topics (idempotent) and say how it went."""
    report = asyncio.run(bootstrap_topics(bootstrap))
    console.print(f"topics: {report.lines()[0]}")


def stop_run(stack: LocalStack, broker: RunBroker) -> bool:
    """Stop every process, then the broker if the run started it; whether it did."""
    stack.stop_all()
    return broker.stop()
