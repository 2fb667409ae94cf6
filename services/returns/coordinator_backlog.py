"""How long accepted returns have waited for the coordinator (a thin aiokafka adapter for
the front door's admission control, services/decisions/admission.py).

Every REFRESH_S the front door asks the broker, per partition of `returns.events`, how far
the coordinator has handled it (its handled group, engine/handled_signal.py; its committed
offset where that says nothing or is behind) and the partition's end; where records are not
handled, the oldest one waits since it was written. When that was is read from the ends
seen before (`EndHistory`: the first sample whose end was past the offset), so a refresh
fetches no record; only an offset written before the history began (a backlog older than
the process, or than HISTORY_MS) is fetched once for its broker timestamp. (A record
fetched every second per partition, with the reader assigned to each partition in turn,
kept ~20 MB more of aiokafka's fetch buffers every 100 s in the soak.) `waiting_s` is the
longest of those waits, or the queued records over the rate the coordinator takes them
(`DrainRate`) if that is longer (0 when it has handled everything), or None while the
broker cannot be asked: admission then takes returns (refusing because a measurement failed
would make the broker an outage of the front door). A coordinator group that never
committed counts from the topic's first record. Every front-door instance measures the
same group: they all see the same backlog.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.engine.oldest_records import timestamp_at
from services.eventing.log_setup import get_logger

REFRESH_S = 1.0
HISTORY_MS = 600_000  # end offsets are remembered this long (a sample per refresh)
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


class DrainRate:
    """How fast the coordinator takes `returns.events` records (pure), over the last
    `window_ms`: how long the records queued now would take it. An age alone trips late: at
    4× the sustainable offer the oldest record reaches the limit only after the limit's
    worth of seconds at the full offer was accepted (61.6 % of accepted returns finished
    within 30 s in `make bench`); the queue over the rate sees a burst in its first
    second. On committed offsets it carried the commit delay (869 refusals at a load the
    machine carries): it is measured on the handled positions."""

    def __init__(self, window_ms: int = 10_000) -> None:
        self.window_ms = window_ms
        self.samples: deque[tuple[int, int]] = deque()  # (time, records taken in all)

    def add(self, now_ms: int, taken_total: int) -> None:
        self.samples.append((now_ms, taken_total))
        while len(self.samples) > 2 and self.samples[1][0] <= now_ms - self.window_ms:
            self.samples.popleft()

    def seconds_to_drain(self, queued: int) -> float | None:
        """`queued` records ÷ the rate they are taken at; None while the rate is not known
        (fewer than two samples, or none taken in the window: the age says then)."""
        if queued <= 0 or len(self.samples) < 2:
            return None
        (first_ms, first), (last_ms, last) = self.samples[0], self.samples[-1]
        if last <= first or last_ms <= first_ms:
            return None
        return queued / ((last - first) / ((last_ms - first_ms) / 1000))


class CoordinatorBacklog:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        group: str,
        handled_group: str | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self.group = group
        # where the coordinator signals what it has handled (engine/handled_signal.py)
        self.handled_group = handled_group
        self.waiting_s: float | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._reader: AIOKafkaConsumer | None = None
        self.history = EndHistory()
        self.drain = DrainRate()
        # partition → (offset, broker timestamp) of the last record fetched for its time
        self._fetched: dict[int, tuple[int, int]] = {}

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
        if self.handled_group is not None:  # handled is sharper; committed where there is none
            handled = await admin.list_consumer_group_offsets(
                self.handled_group, partitions=self.partitions
            )
            committed = {
                tp: handled[tp]
                if tp in handled
                and handled[tp].offset >= 0
                and (tp not in committed or handled[tp].offset >= committed[tp].offset)
                else committed.get(tp)
                for tp in self.partitions
                if tp in handled or tp in committed
            }
        ends = await reader.end_offsets(self.partitions)
        starts = await reader.beginning_offsets(self.partitions)
        now_ms = int(time.time() * 1000)
        self.history.add(now_ms, {tp.partition: ends[tp] for tp in self.partitions})
        waiting_ms = 0
        positions = {}
        for tp in self.partitions:
            done = committed.get(tp)
            position = positions[tp] = max(done.offset if done is not None else -1, starts[tp])
            if position >= ends[tp]:
                continue
            written = self.history.written_by(tp.partition, position)
            if written is None:
                written = await self._written_before_history(reader, tp, position, now_ms)
            if written is not None:
                waiting_ms = max(waiting_ms, now_ms - written)
        queued = sum(max(0, ends[tp] - positions[tp]) for tp in self.partitions)
        self.drain.add(now_ms, sum(positions.values()))
        expected_s = self.drain.seconds_to_drain(queued)
        return max(0.0, waiting_ms / 1000, expected_s or 0.0)

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
