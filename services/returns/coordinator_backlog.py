"""How long accepted returns have waited for the coordinator (a thin aiokafka adapter for
the front door's admission control, services/decisions/admission.py).

Every REFRESH_S the front door asks the broker, per partition of `returns.events`, for the
coordinator group's committed offset and the partition's end; where records are not
committed, the oldest one's broker timestamp says since when they wait. `waiting_s` is the
longest of those waits (0 when the coordinator has committed everything), or None while the
broker cannot be asked: admission then takes returns (refusing because a measurement failed
would make the broker an outage of the front door). A coordinator group that never
committed counts from the topic's first record. Every front-door instance measures the
same group: they all see the same backlog.
"""

from __future__ import annotations

import contextlib
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.engine.oldest_records import timestamp_at
from services.eventing.log_setup import get_logger

REFRESH_S = 1.0
log = get_logger(__name__)


class CoordinatorBacklog:
    def __init__(self, bootstrap: str, topic: str, partitions: int, group: str) -> None:
        self.bootstrap = bootstrap
        self.partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self.group = group
        self.waiting_s: float | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._reader: AIOKafkaConsumer | None = None

    async def refresh(self) -> None:
        try:
            self.waiting_s = await self._measure()
        except (KafkaError, OSError, TimeoutError) as exc:
            if self.waiting_s is not None:
                log.warning("coordinator backlog not measured", error=repr(exc))
            self.waiting_s = None
            await self.stop()  # the next refresh starts fresh clients

    async def stop(self) -> None:
        admin, reader, self._admin, self._reader = self._admin, self._reader, None, None
        with contextlib.suppress(KafkaError, OSError):
            if admin is not None:
                await admin.close()
            if reader is not None:
                await reader.stop()

    async def _measure(self) -> float:
        admin, reader = await self._clients()
        committed = await admin.list_consumer_group_offsets(self.group, partitions=self.partitions)
        ends = await reader.end_offsets(self.partitions)
        starts = await reader.beginning_offsets(self.partitions)
        now_ms = time.time() * 1000
        waiting_ms = 0.0
        for tp in self.partitions:
            done = committed.get(tp)
            position = max(done.offset if done is not None else -1, starts[tp])
            if position >= ends[tp]:
                continue
            if (oldest := await timestamp_at(reader, tp, position)) is not None:
                waiting_ms = max(waiting_ms, now_ms - oldest)
        return max(0.0, waiting_ms / 1000)

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._reader is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.bootstrap, client_id="boomerang-returns-backlog"
            )
            reader = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id="boomerang-returns-backlog",
                enable_auto_commit=False,
            )
            await admin.start()
            await reader.start()
            self._admin, self._reader = admin, reader
        return self._admin, self._reader
