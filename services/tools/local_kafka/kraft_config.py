"""A KRaft node's configuration: server.properties, log4j2.properties and a cluster id.

Every node is a combined broker+controller on 127.0.0.1; a 3-node cluster replicates three
ways with min.insync.replicas=2, a single node keeps one copy.
"""

from __future__ import annotations

import base64
import uuid

from services.tools.local_kafka.cluster_settings import LocalKafkaSettings


def server_properties(settings: LocalKafkaSettings, node_id: int, nodes: int) -> str:
    """The server.properties of node `node_id` in a cluster of `nodes`."""
    voters = ",".join(f"{n}@127.0.0.1:{settings.controller_port(n)}" for n in range(1, nodes + 1))
    replication = min(nodes, 3)
    min_isr = 2 if nodes >= 3 else 1
    node_dir = settings.node_dir(node_id)
    lines = {
        "process.roles": "broker,controller",
        "node.id": node_id,
        "controller.quorum.voters": voters,
        "listeners": (
            f"PLAINTEXT://127.0.0.1:{settings.broker_port(node_id)},"
            f"CONTROLLER://127.0.0.1:{settings.controller_port(node_id)}"
        ),
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{settings.broker_port(node_id)}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": node_dir / "data",
        "num.partitions": 3,
        "default.replication.factor": replication,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replication,
        "offsets.topic.num.partitions": 12,
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": 12,
        "share.coordinator.state.topic.replication.factor": replication,
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": 0,
        # Topics are created by the project's topic bootstrapper, changelogs included.
        "auto.create.topics.enable": "false",
        "log.retention.hours": 168,
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def write_node_config(settings: LocalKafkaSettings, node_id: int, nodes: int) -> None:
    """Write the node's server.properties and log4j2.properties into its (existing) dir."""
    node_dir = settings.node_dir(node_id)
    (node_dir / "server.properties").write_text(server_properties(settings, node_id, nodes))
    (node_dir / "log4j2.properties").write_text(LOG4J2)


def new_cluster_id() -> str:
    """A fresh KRaft cluster id (22 URL-safe base64 characters; it may start with "-")."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
