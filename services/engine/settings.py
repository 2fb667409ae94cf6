"""A service process's settings, from its environment (one place reads them)."""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass

from services.eventing.settings import bootstrap_servers
from services.eventing.topics import DAY_MS, VIEW_SOURCE_DAYS


@dataclass(frozen=True)
class ServiceSettings:
    service: str
    web_port: int
    web_host: str = "127.0.0.1"
    bootstrap: str = ""
    instance_id: str = "1"
    # where other instances of this service forward requests for keys this one owns
    # (engine/owner_routing.py); default http://<bind host, or this host's address>:<port>
    advertised_url: str = ""
    # files a service keeps beside its Kafka state (the coordinator's saga archive)
    state_dir: str = ""
    # how long an entry of a view or an expiring table (answers, scans, refund routes, the
    # order refund ledger) is kept after its last change: as long as a view's source topics
    # keep records (topics.VIEW_SOURCE_DAYS), so a rebuilt view and a running one agree
    state_retention_ms: int = VIEW_SOURCE_DAYS * DAY_MS
    retry_attempts: int = 5
    retry_base_delay_s: float = 0.2
    retry_max_delay_s: float = 5.0
    # state changelogs written and offsets committed this often (Kafka Streams commits every
    # 30 s at least once, Quix every 5 s): a key changed many times in between is written once;
    # 5 s, not 2: 4.8 % less CPU per return at 50 and 100/s (docs/performance.md, stop 43)
    checkpoint_interval_s: float = 5.0
    checkpoint_idle_s: float = 0.5  # sooner once nothing was done for this long
    # tables written less often (the sagas every 5 s, the inventory ledger every minute) are
    # written at a checkpoint too once nothing was done for this long: at 0.5 s, the pauses
    # of a loaded service wrote them several times a minute (2.6 saga and 1.0 ledger
    # records per return at 400/s offered)
    checkpoint_flush_idle_s: float = 2.0
    # records being handled at once (different keys; one key is handled in offset order)
    max_in_flight: int = 100
    # records fetched but not yet done; the loop stops fetching above it (back-pressure)
    max_buffered: int = 2000
    session_timeout_s: float = 10.0
    # while records come, a fetch waits this long for 64 KB (engine/fetch_pace.py; idle, it
    # returns on the first record): longer costs each hop latency, shorter costs the broker
    # and every service requests
    fetch_wait_ms: int = 100
    # bytes one fetch brings at most, per partition and in all (held until handled)
    partition_fetch_bytes: int = 1024 * 1024
    fetch_max_bytes: int = 8 * 1024 * 1024
    linger_ms: int = 5
    # static group membership (KIP-345): a restarted process with the same instance id takes
    # its partitions back at once instead of after the session timeout
    static_membership: bool = False
    # allocations between two young garbage collections (collector.py; 0: Python's 700)
    gc_young_objects: int = 50_000

    @property
    def group_id(self) -> str:
        return f"boomerang-{self.service}"

    @classmethod
    def from_env(cls, service: str, default_port: int) -> ServiceSettings:
        prefix = service.upper().replace("-", "_")
        env = os.environ
        web_port = int(env.get(f"{prefix}_PORT") or default_port)
        web_host = env.get("BOOMERANG_BIND_HOST", "127.0.0.1")
        return cls(
            service=service,
            web_port=web_port,
            web_host=web_host,
            bootstrap=bootstrap_servers(),
            instance_id=env.get("BOOMERANG_INSTANCE_ID") or socket.gethostname(),
            advertised_url=env.get("BOOMERANG_ADVERTISED_URL")
            or f"http://{advertised_host(web_host)}:{web_port}",
            state_dir=env.get("BOOMERANG_STATE_DIR")
            or os.path.join(tempfile.gettempdir(), "boomerang-state"),
            state_retention_ms=int(
                env.get("BOOMERANG_STATE_RETENTION_MS") or cls.state_retention_ms
            ),
            retry_attempts=int(env.get("BOOMERANG_RETRY_ATTEMPTS", cls.retry_attempts)),
            checkpoint_interval_s=float(
                env.get("BOOMERANG_CHECKPOINT_S", cls.checkpoint_interval_s)
            ),
            checkpoint_idle_s=float(env.get("BOOMERANG_CHECKPOINT_IDLE_S", cls.checkpoint_idle_s)),
            checkpoint_flush_idle_s=float(
                env.get("BOOMERANG_CHECKPOINT_FLUSH_IDLE_S", cls.checkpoint_flush_idle_s)
            ),
            max_in_flight=int(env.get("BOOMERANG_MAX_IN_FLIGHT", cls.max_in_flight)),
            max_buffered=int(env.get("BOOMERANG_MAX_BUFFERED", cls.max_buffered)),
            fetch_wait_ms=int(env.get("BOOMERANG_FETCH_WAIT_MS", cls.fetch_wait_ms)),
            partition_fetch_bytes=int(
                env.get("BOOMERANG_PARTITION_FETCH_BYTES", cls.partition_fetch_bytes)
            ),
            fetch_max_bytes=int(env.get("BOOMERANG_FETCH_MAX_BYTES", cls.fetch_max_bytes)),
            linger_ms=int(env.get("BOOMERANG_LINGER_MS", cls.linger_ms)),
            static_membership=env.get("BOOMERANG_STATIC_MEMBERSHIP", "") == "1",
            gc_young_objects=int(env.get("BOOMERANG_GC_YOUNG_OBJECTS", cls.gc_young_objects)),
        )


def advertised_host(bind_host: str) -> str:
    """The host other instances reach this one on: the bind address, or for a wildcard one
    (a container) this host's own address."""
    if bind_host not in ("0.0.0.0", "::", ""):
        return bind_host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return socket.gethostname()
