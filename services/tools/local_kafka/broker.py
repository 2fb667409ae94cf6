"""Install Kafka's jars with Maven, format KRaft storage, start/stop local broker processes.

Every process is tracked by a pid file inside the run directory and is only ever
signalled after checking that its command line names that run directory, so a
recycled pid can never make us kill someone else's process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
PORTS_PER_SLOT = 8  # broker i on base+i, controller i on base+4+i (up to 3 nodes)


class BrokerError(RuntimeError):
    """For a person to act on: a port taken, a failed download, a broker that won't start."""


def pom_kafka_version() -> str:
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    if not match:
        raise BrokerError(f"{POM} declares no <kafka.version>")
    return match.group(1)


LOWEST_BASE_PORT = 20000
SLOTS = 1200  # 20000 + 1200 * 8 + spare slots stays below 32768, where Linux's ephemeral
# ports begin: a restarted broker must not find its port taken by someone's outgoing socket


def default_base_port(root: Path = REPO_ROOT) -> int:
    """A port derived from the checkout's path, so two checkouts don't share a broker."""
    return LOWEST_BASE_PORT + (zlib.crc32(str(root).encode()) % SLOTS) * PORTS_PER_SLOT


@dataclass(frozen=True)
class LocalKafkaSettings:
    version: str
    base_port: int
    run_dir: Path
    cache_dir: Path
    heap: str = "512m"
    log: Callable[[str], None] = field(default=print, compare=False)

    @classmethod
    def from_env(cls, log: Callable[[str], None] = print) -> LocalKafkaSettings:
        cache = Path(os.environ.get("BOOMERANG_CACHE_DIR", REPO_ROOT / ".cache"))
        return cls(
            version=os.environ.get("BOOMERANG_KAFKA_VERSION") or pom_kafka_version(),
            base_port=int(os.environ.get("BOOMERANG_KAFKA_PORT") or default_base_port()),
            run_dir=Path(os.environ.get("BOOMERANG_KAFKA_DIR") or cache / "kafka-run"),
            cache_dir=cache,
            heap=os.environ.get("BOOMERANG_KAFKA_HEAP", "512m"),
            log=log,
        )

    @property
    def libs_dir(self) -> Path:
        return self.cache_dir / f"kafka-{self.version}" / "libs"

    def broker_port(self, node_id: int) -> int:
        return self.base_port + node_id - 1

    def controller_port(self, node_id: int) -> int:
        return self.base_port + 3 + node_id

    def bootstrap(self, nodes: int) -> str:
        return ",".join(f"127.0.0.1:{self.broker_port(n)}" for n in range(1, nodes + 1))


# ---------------------------------------------------------------- jars


def install_jars(settings: LocalKafkaSettings) -> Path:
    """Resolve kafka_2.13 and its runtime dependencies from Maven Central, once."""
    marker = settings.libs_dir / f"kafka_2.13-{settings.version}.jar"
    if marker.exists():
        return settings.libs_dir
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is not on PATH; it is needed once to fetch Kafka's jars")
    staging = settings.libs_dir.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    settings.log(f"fetching Apache Kafka {settings.version} jars from Maven Central ...")
    started = time.monotonic()
    cmd = [
        "mvn",
        "-B",
        "-q",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-Dkafka.version={settings.version}",
        f"-DoutputDirectory={staging}",
        f"-Dmaven.repo.local={settings.cache_dir / 'm2'}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not (staging / marker.name).exists():
        raise BrokerError(f"mvn failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    shutil.rmtree(settings.libs_dir, ignore_errors=True)
    staging.rename(settings.libs_dir)
    jars = len(list(settings.libs_dir.glob("*.jar")))
    settings.log(f"  {jars} jars in {settings.libs_dir} ({time.monotonic() - started:.1f}s)")
    return settings.libs_dir


# ---------------------------------------------------------------- config


def _server_properties(settings: LocalKafkaSettings, node_id: int, nodes: int) -> str:
    voters = ",".join(f"{n}@127.0.0.1:{settings.controller_port(n)}" for n in range(1, nodes + 1))
    replication = min(nodes, 3)
    min_isr = 2 if nodes >= 3 else 1
    node_dir = settings.run_dir / f"node-{node_id}"
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
        # Topics are created by the project's topic bootstrapper (or by Faust for its own).
        "auto.create.topics.enable": "false",
        "log.retention.hours": 168,
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


_LOG4J2 = """\
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


def _new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


# ---------------------------------------------------------------- processes


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _is_ours(pid: int, node_dir: Path) -> bool:
    """Alive, not a zombie, and its command line names this node's directory."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return False
    return state != "Z" and str(node_dir) in cmdline


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


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
        return self.settings.run_dir / f"node-{node_id}"

    def formatted_nodes(self) -> int:
        state = self._state()
        return int(state["nodes"]) if state else 0

    def statuses(self) -> list[NodeStatus]:
        result = []
        for node_id in range(1, self.formatted_nodes() + 1):
            pid_file = self.node_dir(node_id) / "kafka.pid"
            pid = _read_pid(pid_file)
            running = pid is not None and _is_ours(pid, self.node_dir(node_id))
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
        cluster_id = _new_cluster_id()
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        for node_id in range(1, nodes + 1):
            node_dir = self.node_dir(node_id)
            shutil.rmtree(node_dir, ignore_errors=True)
            node_dir.mkdir(parents=True)
            (node_dir / "server.properties").write_text(
                _server_properties(self.settings, node_id, nodes)
            )
            (node_dir / "log4j2.properties").write_text(_LOG4J2)
            result = subprocess.run(
                [
                    *self._java(node_id),
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
            if node_id in skip:
                continue
            node_dir = self.node_dir(node_id)
            (node_dir / "server.properties").write_text(
                _server_properties(self.settings, node_id, nodes)
            )
            (node_dir / "log4j2.properties").write_text(_LOG4J2)

    def _java(self, node_id: int) -> list[str]:
        node_dir = self.node_dir(node_id)
        return [
            "java",
            f"-Xms{self.settings.heap}",
            f"-Xmx{self.settings.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={node_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={node_dir}",
            "-cp",
            f"{self.settings.libs_dir}/*",
        ]

    def start_node(self, node_id: int) -> int:
        port = self.settings.broker_port(node_id)
        for taken in (port, self.settings.controller_port(node_id)):
            if _port_open(taken):
                raise BrokerError(
                    f"port {taken} is in use by a process that is not this checkout's broker; "
                    "set BOOMERANG_KAFKA_PORT to another base port"
                )
        node_dir = self.node_dir(node_id)
        with open(node_dir / "kafka.out", "ab") as out:
            proc = subprocess.Popen(
                [*self._java(node_id), "kafka.Kafka", str(node_dir / "server.properties")],
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
        pid = _read_pid(self.node_dir(node_id) / "kafka.pid")
        if pid is not None and _is_ours(pid, self.node_dir(node_id)):
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
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                self.settings.log(f"pid {pid} ignored SIGTERM for {timeout:.0f}s: killed")
            _reap(pid)
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


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


# ---------------------------------------------------------------- readiness


async def _metadata_brokers(bootstrap: str) -> int:
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await client.bootstrap()  # sends a Metadata request and parses the answer
        return len(client.cluster.brokers())
    finally:
        await client.close()


def wait_until_ready(
    bootstrap: str,
    expected_brokers: int = 1,
    timeout: float = 90.0,
    on_timeout: Callable[[], str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Block until the cluster answers a metadata request listing every broker."""
    started = time.monotonic()
    last_error: Exception | None = None
    last_report = started
    client_log = logging.getLogger("aiokafka")
    previous_level = client_log.level
    client_log.setLevel(logging.CRITICAL)  # "connection refused" is expected while it starts
    try:
        while time.monotonic() - started < timeout:
            try:
                if asyncio.run(_metadata_brokers(bootstrap)) >= expected_brokers:
                    if progress:
                        waited = time.monotonic() - started
                        progress(f"{bootstrap} answered a metadata request after {waited:.1f}s")
                    return
            except Exception as exc:
                last_error = exc
            if progress and time.monotonic() - last_report >= 5:
                last_report = time.monotonic()
                progress(f"waiting for {bootstrap} ... {last_report - started:.0f}s")
            time.sleep(0.5)
    finally:
        client_log.setLevel(previous_level)
    detail = on_timeout() if on_timeout else ""
    raise BrokerError(
        f"no metadata answer from {bootstrap} in {timeout:.0f}s ({last_error})\n{detail}"
    )
