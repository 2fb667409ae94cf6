"""Which Kafka the tests run against: KAFKA_BOOTSTRAP_SERVERS → Docker engine → native broker.

- KAFKA_BOOTSTRAP_SERVERS set: an existing cluster; nothing is started or stopped.
- A Docker engine answers: an `apache/kafka` container in KRaft mode via testcontainers.
- Otherwise: this checkout's native KRaft broker (Maven Central jars). If the session
  started it, the session stops it; a broker that was already up is left running.

BOOMERANG_KAFKA_MODE=external|docker|native forces one.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from services.tools.local_kafka.broker import LocalKafka, LocalKafkaSettings, wait_until_ready
from services.tools.local_stack.orphan_reaper import reap_children_if_i_die


@dataclass
class KafkaCluster:
    bootstrap: str
    kind: str  # external | docker | native
    version: str
    started_here: bool
    stop: Callable[[], None] = field(default=lambda: None, repr=False)

    def describe(self) -> str:
        origin = "started by this test session" if self.started_here else "already running"
        return f"{self.kind} Apache Kafka {self.version} (KRaft) at {self.bootstrap}, {origin}"


def docker_engine_available() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_docker_kafka(version: str) -> KafkaCluster:
    from testcontainers.core.container import DockerContainer

    port = _free_port()
    container = (
        DockerContainer(f"apache/kafka:{version}")
        .with_bind_ports(port, port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", f"PLAINTEXT://:{port},CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{port}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env(
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
        )
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    )
    container.start()
    bootstrap = f"127.0.0.1:{port}"
    wait_until_ready(bootstrap, timeout=120)
    return KafkaCluster(bootstrap, "docker", version, True, stop=container.stop)


def start_native_kafka() -> KafkaCluster:
    local = LocalKafka(LocalKafkaSettings.from_env(log=lambda message: None))
    already = any(status.running for status in local.statuses())
    if not already:
        reap_children_if_i_die()  # a killed test session leaves no broker behind
    nodes = local.formatted_nodes() or 1
    bootstrap = local.up(nodes=nodes, timeout=120)
    stop = (lambda: None) if already else (lambda: local.down())
    return KafkaCluster(bootstrap, "native", local.settings.version, not already, stop=stop)


def provide_cluster() -> KafkaCluster:
    mode = os.environ.get("BOOMERANG_KAFKA_MODE")
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    version = LocalKafkaSettings.from_env().version
    if mode == "external" or (mode is None and external):
        if not external:
            raise RuntimeError("BOOMERANG_KAFKA_MODE=external needs KAFKA_BOOTSTRAP_SERVERS")
        wait_until_ready(external, timeout=60)
        return KafkaCluster(external, "external", "(not managed here)", False)
    if mode == "docker" or (mode is None and docker_engine_available()):
        return start_docker_kafka(version)
    return start_native_kafka()
