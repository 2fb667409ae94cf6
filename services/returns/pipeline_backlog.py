"""What the front door measures for admission (a thin aiokafka adapter for
services/decisions/admission.py): every REFRESH_S, from the broker,

- per consumer group of the pipeline, over its input partitions on a return's path
  (PATH_TOPICS), the end offsets and how far the group has handled them: the done
  prefixes it signals every second (engine/handled_signal.py), or its committed offsets
  where it signalled nothing; they go to decisions/pipeline_wait.py, which says how long
  a return taken now would wait in the queues;
- how long the oldest `returns.events` record the coordinator has not handled has waited.
  When that record was written is read from the ends seen before (`EndHistory`: the first
  sample whose end was past the offset), so a refresh fetches no record; only an offset
  written before the history began (a backlog older than the process, or than HISTORY_MS)
  is fetched once for its broker timestamp. (A record fetched every second per partition,
  with the reader assigned to each partition in turn, kept ~20 MB more of aiokafka's fetch
  buffers every 100 s in a soak.) A coordinator group that never committed counts from the
  topic's first record.

While the broker cannot be asked, both are None and admission takes returns (refusing
because a measurement failed would make the broker an outage of the front door). Every
front-door instance measures the same groups: they all see the same backlog.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.decisions.admission import Backlog
from services.decisions.pipeline_wait import Partition, PipelineWait, RecentMean
from services.engine.handled_signal import handled_group
from services.engine.oldest_records import timestamp_at
from services.eventing.log_setup import get_logger
from services.eventing.topics import (
    INSPECTION_EVENTS,
    INTAKE_COMMANDS,
    INTAKE_EVENTS,
    PICKUP_COMMANDS,
    PICKUP_EVENTS,
    REFUND_COMMANDS,
    REFUND_EVENTS,
    RETURNS_EVENTS,
)

REFRESH_S = 1.0
HISTORY_MS = 600_000  # end offsets are remembered this long (a sample per refresh)
# the services a return passes after the front door and their inputs on its path (not
# the timers, the archive, the ledgers: they are not what a return waits for)
PATH_TOPICS: dict[str, tuple[str, ...]] = {
    "coordinator": tuple(
        t.name
        for t in (RETURNS_EVENTS, PICKUP_EVENTS, INSPECTION_EVENTS, INTAKE_EVENTS, REFUND_EVENTS)
    ),
    "pickup": (PICKUP_COMMANDS.name,),
    "inspection": (RETURNS_EVENTS.name, PICKUP_EVENTS.name),  # its views, for the scan
    "warehouse-intake": (INTAKE_COMMANDS.name,),
    "refund": (REFUND_COMMANDS.name,),
}
ENTRY_SERVICE = "coordinator"  # the group that takes returns.events first
log = get_logger(__name__)


class EndHistory:
    """Samples of each partition's end offset over time (pure): when did the end pass an
    offset, i.e. since when has the record at that offset existed?"""

    def __init__(self, keep_ms: int = HISTORY_MS) -> None:
        self.keep_ms = keep_ms
        self.samples: deque[tuple[int, dict[int, int]]] = deque()

    def add(self, now_ms: int, ends: dict[int, int]) -> None:
        self.samples.append((now_ms, ends))
        while len(self.samples) > 1 and self.samples[0][0] < now_ms - self.keep_ms:
            self.samples.popleft()

    def written_by(self, partition: int, offset: int) -> int | None:
        """The time of the first sample that had the record at `offset` (its end past it);
        None when the oldest sample had it already (written before the history) or none."""
        if not self.samples or self.samples[0][1].get(partition, 0) > offset:
            return None
        return next((t for t, ends in self.samples if ends.get(partition, 0) > offset), None)

    def span_ms(self, now_ms: int) -> int:
        return now_ms - self.samples[0][0] if self.samples else 0


class PipelineBacklog:
    def __init__(
        self,
        bootstrap: str,
        entry_topic: str,
        entry_partitions: int,
        path_topics: dict[str, tuple[str, ...]] | None = None,
        entry_service: str = ENTRY_SERVICE,
    ) -> None:
        self.bootstrap = bootstrap
        self.entry = [TopicPartition(entry_topic, p) for p in range(entry_partitions)]
        self.path_topics = PATH_TOPICS if path_topics is None else path_topics
        self.groups = {service: f"boomerang-{service}" for service in self.path_topics}
        self.entry_service = entry_service
        self.reading = Backlog()
        self.by_part: dict[str, float] = {}
        self._admin: AIOKafkaAdminClient | None = None
        self._reader: AIOKafkaConsumer | None = None
        self.history = EndHistory()
        self.pipeline = PipelineWait(entry=(entry_service, entry_topic))
        self.recent_waits = RecentMean()  # admission reads the mean of the last few seconds
        # partition → (offset, broker timestamp) of the last record fetched for its time
        self._fetched: dict[int, tuple[int, int]] = {}

    def shown(self) -> dict[str, object]:
        """The last measures in milliseconds, for /health (null: not known): the wait
        admission reads (the mean of the last SMOOTHING_MS of samples) and each part's
        wait in the last sample alone."""
        return {
            "pipeline_wait_ms": _ms(self.reading.pipeline_wait_s),
            "by_part_ms": {part: _ms(wait) for part, wait in self.by_part.items()},
            "coordinator_wait_ms": _ms(self.reading.waiting_s),
        }

    async def refresh(self) -> None:
        try:
            self.reading = await self._measure()
        except (KafkaError, OSError, TimeoutError) as exc:
            if self.reading != Backlog():
                log.warning("pipeline backlog not measured", error=repr(exc))
            self.reading = Backlog()
            await self.stop()  # the next refresh starts fresh clients

    async def stop(self) -> None:
        admin, reader, self._admin, self._reader = self._admin, self._reader, None, None
        with contextlib.suppress(KafkaError, OSError):
            if admin is not None:
                await admin.close()
            if reader is not None:
                await reader.stop()

    async def _measure(self) -> Backlog:
        admin, reader = await self._clients()
        positions: dict[str, dict[TopicPartition, int]] = {}
        for service, group in self.groups.items():
            committed = await admin.list_consumer_group_offsets(group)
            handled = await admin.list_consumer_group_offsets(handled_group(group))
            found = positions[service] = {}
            on_path = set(self.path_topics[service])
            for tp in committed.keys() | handled.keys():
                if tp.topic not in on_path:
                    continue
                offsets = [m.offset for m in (committed.get(tp), handled.get(tp)) if m is not None]
                if max(offsets, default=-1) >= 0:
                    found[tp] = max(offsets)
        every = set(self.entry).union(*(found.keys() for found in positions.values()))
        ends = await reader.end_offsets(sorted(every))
        now_ms = int(time.time() * 1000)
        self.pipeline.add(
            now_ms,
            {
                service: {
                    (tp.topic, tp.partition): Partition(ends[tp], min(position, ends[tp]))
                    for tp, position in found.items()
                }
                for service, found in positions.items()
            },
        )
        self.by_part = self.pipeline.by_part()
        self.recent_waits.add(now_ms, sum(self.by_part.values()))
        entry_positions = positions.get(self.entry_service, {})
        waiting_s = await self._entry_wait(reader, entry_positions, ends, now_ms)
        return Backlog(waiting_s=waiting_s, pipeline_wait_s=self.recent_waits.mean())

    async def _entry_wait(
        self,
        reader: AIOKafkaConsumer,
        positions: dict[TopicPartition, int],
        ends: dict[TopicPartition, int],
        now_ms: int,
    ) -> float:
        """How long the oldest returns.events record the coordinator has not handled has
        waited, seconds (0 when it handled everything)."""
        starts = await reader.beginning_offsets(self.entry)
        self.history.add(now_ms, {tp.partition: ends[tp] for tp in self.entry})
        waiting_ms = 0
        for tp in self.entry:
            position = max(positions.get(tp, -1), starts[tp])
            if position >= ends[tp]:
                continue
            written = self.history.written_by(tp.partition, position)
            if written is None:
                written = await self._written_before_history(reader, tp, position, now_ms)
            if written is not None:
                waiting_ms = max(waiting_ms, now_ms - written)
        return max(0.0, waiting_ms / 1000)

    async def _written_before_history(
        self, reader: AIOKafkaConsumer, tp: TopicPartition, offset: int, now_ms: int
    ) -> int | None:
        """When a record older than the history was written: its broker timestamp, fetched
        once per offset; past HISTORY_MS of history, at least that long ago."""
        if self.history.span_ms(now_ms) >= self.history.keep_ms:
            return now_ms - self.history.span_ms(now_ms)
        known = self._fetched.get(tp.partition)
        if known is not None and known[0] == offset:
            return known[1]
        timestamp = await timestamp_at(reader, tp, offset)
        if timestamp is not None:
            self._fetched[tp.partition] = (offset, timestamp)
        return timestamp

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


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)
