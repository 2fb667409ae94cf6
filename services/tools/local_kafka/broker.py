"""Start, stop and inspect a local KRaft cluster of broker processes (`LocalKafka`).

Every process is tracked by a pid file inside the run directory and is only ever
signalled after checking that its command line names that run directory, so a
recycled pid can never make us kill someone else's process. The pieces: settings and
ports (cluster_settings), Kafka's jars (maven_jars), each node's config (kraft_config),
node processes (node_processes) and readiness (readiness); this module re-exports the
names its callers import from it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from services.tools.local_kafka.cluster_settings import (
    REPO_ROOT,
    BrokerError,
    LocalKafkaSettings,
    default_base_port,
    pom_kafka_version,
)
from services.tools.local_kafka.kraft_config import new_cluster_id, write_node_config
from services.tools.local_kafka.maven_jars import install_jars
from services.tools.local_kafka.node_processes import (
    is_ours,
    java_command,
    pid_alive,
    port_open,
    read_pid,
    reap,
)
from services.tools.local_kafka.readiness import wait_until_ready

__all__ = [
    "REPO_ROOT",
    "BrokerError",
    "LocalKafka",
    "LocalKafkaSettings",
    "NodeStatus",
    "default_base_port",
    "install_jars",
    "pom_kafka_version",
    "wait_until_ready",
]


@dataclass
class NodeStatus:
    node_id: int
    pid: int | None
    running: bool
    stale_pid_file: bool


class LocalKafka:
    """One local KRaft cluster of 1 or 3 combined broker+controller nodes."""

    def __init__(self, settings: LocalKafkaSettings) -> None:
        self.settings = settings
        self.state_file = settings.run_dir / "cluster.json"

    # -- state

    def _state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def node_dir(self, node_id: int) -> Path:
        return self.settings.node_dir(node_id)

    def formatted_nodes(self) -> int:
        state = self._state()
        return int(state["nodes"]) if state else 0

    def statuses(self) -> list[NodeStatus]:
        result = []
        for node_id in range(1, self.formatted_nodes() + 1):
            pid_file = self.node_dir(node_id) / "kafka.pid"
            pid = read_pid(pid_file)
            running = pid is not None and is_ours(pid, self.node_dir(node_id))
            result.append(NodeStatus(node_id, pid, running, pid is not None and not running))
        return result

    # -- lifecycle

    def up(self, nodes: int = 1, timeout: float = 90.0) -> str:
        if nodes not in (1, 3):
            raise BrokerError("a local cluster has 1 or 3 nodes")
        formatted = self.formatted_nodes()
        if formatted and formatted != nodes:
            raise BrokerError(
                f"{self.settings.run_dir} holds a {formatted}-node cluster; "
                f"run `make kafka-clean` before starting {nodes} node(s)"
            )
        install_jars(self.settings)
        statuses = self.statuses()
        for status in statuses:
            if status.stale_pid_file:
                self.settings.log(
                    f"node {status.node_id}: pid file names {status.pid}, which is not running "
                    "(left by a killed run) - starting it again"
                )
                (self.node_dir(status.node_id) / "kafka.pid").unlink(missing_ok=True)
        running = {s.node_id for s in statuses if s.running}
        if not formatted:
            self._format(nodes)
        else:
            self._write_configs(nodes, skip=running)  # ports may have changed since formatting
        for node_id in range(1, nodes + 1):
            if node_id not in running:
                self.start_node(node_id)
        bootstrap = self.settings.bootstrap(nodes)
        wait_until_ready(
            bootstrap,
            expected_brokers=nodes,
            timeout=timeout,
            on_timeout=self._tail_logs,
            progress=self.settings.log,
        )
        return bootstrap

    def _format(self, nodes: int) -> None:
        cluster_id = new_cluster_id()
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        for node_id in range(1, nodes + 1):
            node_dir = self.node_dir(node_id)
            shutil.rmtree(node_dir, ignore_errors=True)
            node_dir.mkdir(parents=True)
            write_node_config(self.settings, node_id, nodes)
            result = subprocess.run(
                [
                    *java_command(self.settings, node_id),
                    "kafka.tools.StorageTool",
                    "format",
                    f"--cluster-id={cluster_id}",  # an id may start with "-"
                    "-c",
                    str(node_dir / "server.properties"),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise BrokerError(
                    f"formatting node {node_id} failed:\n{result.stdout}{result.stderr}"
                )
        self.state_file.write_text(
            json.dumps(
                {
                    "nodes": nodes,
                    "cluster_id": cluster_id,
                    "version": self.settings.version,
                    "base_port": self.settings.base_port,
                }
            )
        )
        self.settings.log(f"formatted KRaft storage for {nodes} node(s), cluster id {cluster_id}")

    def _write_configs(self, nodes: int, skip: set[int] | frozenset[int] = frozenset()) -> None:
        for node_id in range(1, nodes + 1):
            if node_id not in skip:
                write_node_config(self.settings, node_id, nodes)

    def start_node(self, node_id: int) -> int:
        port = self.settings.broker_port(node_id)
        for taken in (port, self.settings.controller_port(node_id)):
            if port_open(taken):
                raise BrokerError(
                    f"port {taken} is in use by a process that is not this checkout's broker; "
                    "set BOOMERANG_KAFKA_PORT to another base port"
                )
        node_dir = self.node_dir(node_id)
        with open(node_dir / "kafka.out", "ab") as out:
            proc = subprocess.Popen(
                [
                    *java_command(self.settings, node_id),
                    "kafka.Kafka",
                    str(node_dir / "server.properties"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=node_dir,
            )
        (node_dir / "kafka.pid").write_text(str(proc.pid))
        self.settings.log(f"node {node_id}: started pid {proc.pid} on 127.0.0.1:{port}")
        return proc.pid

    def kill_node(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        """Signal one node (for fault injection); the pid file stays so `up` can tell."""
        pid = read_pid(self.node_dir(node_id) / "kafka.pid")
        if pid is not None and is_ours(pid, self.node_dir(node_id)):
            os.kill(pid, sig)

    def down(self, wipe: bool = False, timeout: float = 30.0) -> list[int]:
        stopped = []
        for status in self.statuses():
            pid_file = self.node_dir(status.node_id) / "kafka.pid"
            if status.running and status.pid is not None:
                os.kill(status.pid, signal.SIGTERM)
                stopped.append(status.pid)
            elif status.stale_pid_file:
                self.settings.log(f"node {status.node_id}: stale pid file {status.pid} removed")
            pid_file.unlink(missing_ok=True)
        deadline = time.monotonic() + timeout
        for pid in stopped:
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                self.settings.log(f"pid {pid} ignored SIGTERM for {timeout:.0f}s: killed")
            reap(pid)
        if wipe:
            shutil.rmtree(self.settings.run_dir, ignore_errors=True)
        return stopped

    def _tail_logs(self) -> str:
        tails = []
        for node_id in range(1, self.formatted_nodes() + 1):
            out = self.node_dir(node_id) / "kafka.out"
            if out.exists():
                tails.append(
                    f"--- node {node_id} ({out}):\n" + "\n".join(out.read_text().splitlines()[-25:])
                )
        return "\n".join(tails)


def checkout_bootstrap() -> str:
    """The bootstrap address of this checkout's local cluster (started or not)."""
    local = LocalKafka(LocalKafkaSettings.from_env())
    return local.settings.bootstrap(local.formatted_nodes() or 1)
