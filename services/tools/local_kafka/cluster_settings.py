"""Where a local KRaft cluster lives: its Kafka version, ports, run and cache directories.

Two checkouts get different ports (derived from the checkout's path) so they never share
a broker; everything can be overridden from the environment (`LocalKafkaSettings.from_env`).
"""

from __future__ import annotations

import os
import re
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
    """The Kafka version deploy/kafka/pom.xml pins."""
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
    """One cluster's version, base port, directories, JVM heap and progress log."""

    version: str
    base_port: int
    run_dir: Path
    cache_dir: Path
    heap: str = "512m"
    log: Callable[[str], None] = field(default=print, compare=False)

    @classmethod
    def from_env(cls, log: Callable[[str], None] = print) -> LocalKafkaSettings:
        """This checkout's cluster, with BOOMERANG_KAFKA_* / BOOMERANG_CACHE_DIR overrides."""
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

    def node_dir(self, node_id: int) -> Path:
        """A node's config, data, log and pid file."""
        return self.run_dir / f"node-{node_id}"

    def broker_port(self, node_id: int) -> int:
        return self.base_port + node_id - 1

    def controller_port(self, node_id: int) -> int:
        return self.base_port + 3 + node_id

    def bootstrap(self, nodes: int) -> str:
        return ",".join(f"127.0.0.1:{self.broker_port(n)}" for n in range(1, nodes + 1))
