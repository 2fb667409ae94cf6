"""The one batched consume loop of a process.

`getmany` fetches what the assigned partitions have; records of one key (the Kafka key:
return_id, order_ref, warehouse_id) are handled one after another in offset order, records
of different keys concurrently (at most `max_in_flight` handlers at once, at most
`max_buffered` records fetched and not done). A record is done once its effects are on the
broker. Every `checkpoint_interval_s` the changed state is written to its changelogs and
then, per input partition, the offset of the contiguous prefix of done records is committed
(never past a state change that is not in a changelog): at least once, with effects that
are idempotent by construction (event ids, idempotency keys, stored answers, and state that
never takes one record twice). docs/design.md says why not Kafka transactions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from services.engine import loop_metrics
from services.engine.changelog_recovery import rebuild_views, recover_partitions
from services.engine.fetch_pace import FetchPace
from services.engine.handled_signal import SIGNAL_EVERY_S, HandledPositions
from services.engine.heap_release import heap_trimmer
from services.engine.offset_tracking import OffsetProgress
from services.engine.partition_owners import advertising_assignor
from services.engine.producer import RecordProducer
from services.engine.record_handling import RecordHandling, record_key
from services.engine.settings import ServiceSettings
from services.engine.state_store import StateStore
from services.eventing.avro_codec import AvroCodec
from services.eventing.handler_contract import Subscription
from services.eventing.log_setup import get_logger

log = get_logger(__name__)
REPORT_EVERY_S = 10.0
LOST_GENERATION = -1  # aiokafka's generation once the group coordinator forgot the member
PRUNE_EVERY_S = 60.0  # stamps of keys whose state is gone are dropped this often
# free heap pages are handed back to the system this often (engine/heap_release.py)
HEAP_RELEASE_EVERY_S = 10.0
LAG_MEASURED_EVERY_S = 1.0  # for /metrics (engine/loop_metrics.py)


class OffsetStore(Protocol):
    """Where a loop's input offsets live. Kafka's group offsets by default; a service that
    stores its offsets with its effects in a database gives its own: the loop seeks to its
    positions on assignment, and its handlers write the offsets (`Incoming.offset`) in the
    transaction of their effects."""

    async def starting_positions(self, partitions: Sequence[TopicPartition]) -> dict[Any, int]: ...

    async def commit(self, consumer: AIOKafkaConsumer, offsets: dict[Any, int]) -> None: ...


class KafkaGroupOffsets:
    async def starting_positions(self, partitions: Sequence[TopicPartition]) -> dict[Any, int]:
        return {}  # the group's committed offsets (or the earliest, for a new group)

    async def commit(self, consumer: AIOKafkaConsumer, offsets: dict[Any, int]) -> None:
        await consumer.commit(offsets)


class ConsumeLoop:
    def __init__(
        self,
        settings: ServiceSettings,
        subscriptions: Sequence[Subscription],
        codec: AvroCodec,
        producer: RecordProducer,
        store: StateStore,
        on_fatal: Callable[[BaseException], None],
        offsets: OffsetStore | None = None,
        admission_topics: frozenset[str] = frozenset(),
        arrival_hooks: Sequence[Callable[[set[int]], Awaitable[None]]] = (),
    ) -> None:
        self.settings = settings
        self.admission_topics = admission_topics
        # stores outside the tables brought up to date for arriving partitions, before the
        # loop is ready (the coordinator's saga archive)
        self.arrival_hooks = tuple(arrival_hooks)
        self.by_topic = {topic: sub for sub in subscriptions for topic in sub.topics}
        if len(self.by_topic) != sum(len(sub.topics) for sub in subscriptions):
            raise ValueError("a topic is read by two subscriptions of one service")
        self.producer = producer
        self.codec = codec
        self.store = store
        self.on_fatal = on_fatal
        self.offsets = offsets or KafkaGroupOffsets()
        self.records = RecordHandling(
            settings, codec, producer, store, asyncio.Semaphore(settings.max_in_flight)
        )
        self.progress = OffsetProgress()
        self.tails: dict[str, asyncio.Task] = {}
        self.owned: set[TopicPartition] = set()
        self.state_partitions: set[int] = set()
        self.recovering = False
        self.rebalancing = False
        self.assignments = 0  # rebalances this instance came out of with its state ready
        self.committed: dict[TopicPartition, int] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self.fetch_pace: FetchPace | None = None  # set once the consumer has started
        self.done = 0  # records done since the last report
        self.last_done_at = 0.0
        self._pruned_at = 0.0
        self._release_heap = heap_trimmer()
        self._heap_released_at = 0.0
        self.state_expired = 0  # entries forgotten past their table's retention
        self.state_writes = 0
        self.failed: BaseException | None = None
        # how far each input partition is handled, a signal for the front door's admission
        self.handled = HandledPositions(
            settings.bootstrap,
            settings.group_id,
            f"{settings.group_id}-{settings.instance_id}-handled",
        )
        self._checkpoint_lock = asyncio.Lock()
        self._stopping = False
        self.lag: dict[tuple[str, int], int] = {}  # last measured, per input partition

    def readings(self) -> loop_metrics.LoopReadings:
        """What /metrics shows of this loop (plain readings, no I/O)."""
        return loop_metrics.LoopReadings(
            ready=self.ready,
            partitions_assigned=len(self.owned),
            in_flight=len(self.tails),
            buffered=self.progress.outstanding(),
            lag=dict(self.lag),
            state_entries={name: len(table) for name, table in self.store.tables.items()},
            keys_tracked=len(self.store.partition_of),
            state_expired=self.state_expired,
            skipped_as_applied=self.records.skipped_as_applied,
        )

    async def _measure_lag_every(self) -> None:
        """Each owned partition's records not yet done: fetched and not done, plus not
        fetched up to the high watermark last seen."""
        while True:
            await asyncio.sleep(LAG_MEASURED_EVERY_S)
            if self.consumer is None or self.owned_partitions() is None:
                continue
            measured = {}
            for tp in list(self.owned):
                try:
                    unfetched = await self._unfetched(tp)
                except KafkaError:
                    continue
                if unfetched is not None:
                    waiting = self.progress.partitions.get((tp.topic, tp.partition))
                    outstanding = waiting.outstanding if waiting else 0
                    measured[(tp.topic, tp.partition)] = unfetched + outstanding
            self.lag = measured

    async def _unfetched(self, tp: TopicPartition) -> int | None:
        """Records of `tp` not fetched yet, to the high watermark last seen (None before a
        fetch has answered)."""
        assert self.consumer is not None
        high = self.consumer.highwater(tp)
        if high is None:
            return None
        return max(0, high - await self.consumer.position(tp))

    @property
    def ready(self) -> bool:
        return bool(self.owned) and not self.recovering and not self.rebalancing

    def owned_partitions(self) -> frozenset[int] | None:
        """The partition numbers whose state is here; None while partitions move or their
        state is recovered (and before the first assignment)."""
        if self.rebalancing or self.recovering or not self.assignments or self.membership_lost():
            return None
        return frozenset(self.state_partitions)

    async def records_behind(self, topic: str) -> int | None:
        """Records of `topic` on this instance's partitions not handled yet: not fetched
        (to the high watermark last seen) or fetched and not done; None while unknown (no
        consumer, partitions moving, or no fetch answered yet)."""
        if self.consumer is None or self.owned_partitions() is None:
            return None
        behind = 0
        for tp in self.consumer.assignment():
            if tp.topic != topic:
                continue
            unfetched = await self._unfetched(tp)
            if unfetched is None:
                return None
            behind += unfetched
        return behind + self.progress.outstanding()

    def partition_count(self, topic: str, declared: int) -> int:
        """`topic`'s partitions as the consumer's metadata has them (`declared` before it
        has any)."""
        known = self.consumer.partitions_for_topic(topic) if self.consumer else None
        return len(known) if known else declared

    async def start(self) -> None:
        if not self.by_topic:
            return
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap,
            group_id=self.settings.group_id,
            client_id=f"{self.settings.group_id}-{self.settings.instance_id}",
            group_instance_id=f"{self.settings.group_id}-{self.settings.instance_id}"
            if self.settings.static_membership
            else None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # the range assignor keeps co-partitioned inputs together; its metadata carries
            # this instance's HTTP address (engine/partition_owners.py)
            partition_assignment_strategy=(advertising_assignor(self.settings.advertised_url),),
            session_timeout_ms=int(self.settings.session_timeout_s * 1000),
            heartbeat_interval_ms=3_000,
            metadata_max_age_ms=5_000,
            # what one fetch may bring (records not yet handled, held in memory): at 4 MB a
            # partition and aiokafka's 50 MB a fetch, a service's size rose by tens of MB
            # after a pause; a larger record than the limit still comes, alone
            max_partition_fetch_bytes=self.settings.partition_fetch_bytes,
            fetch_max_bytes=self.settings.fetch_max_bytes,
            # a fetch waits up to fetch_wait_ms for 64 KB: one request carries many records
            # under load (a fetch per record or two cost the broker and every service a request)
            fetch_max_wait_ms=self.settings.fetch_wait_ms,
            fetch_min_bytes=64 * 1024,
        )
        self.consumer.subscribe(sorted(self.by_topic), listener=_Rebalance(self))
        try:
            await self.consumer.start()
        except KafkaError:
            await self.consumer.stop()
            raise
        self.fetch_pace = FetchPace(self.consumer, self.settings.fetch_wait_ms)

    async def run(self) -> None:
        if self.consumer is None:
            return
        checkpoints = asyncio.create_task(self._checkpoint_every())
        signals = asyncio.create_task(self._signal_handled_every())
        lag = asyncio.create_task(self._measure_lag_every())
        try:
            while not self._stopping:
                # no fetch while partitions move, state is recovered, or this member was put
                # out of the group (the coordinator's own task rejoins it)
                if self.rebalancing or self.membership_lost():
                    await asyncio.sleep(0.05)
                    continue
                room = self.settings.max_buffered - self.progress.outstanding()
                # full: the partitions are paused, not left unpolled (a consumer that does not
                # poll for max.poll.interval.ms is put out of the group)
                self._throttle(room)
                try:
                    batches = await self.consumer.getmany(timeout_ms=200, max_records=max(room, 1))
                except KafkaError as exc:
                    log.warning("fetch failed; retrying", error=repr(exc))
                    await asyncio.sleep(0.5)
                    continue
                if self.fetch_pace is not None:
                    self.fetch_pace.after_poll(any(batches.values()))
                for tp, messages in batches.items():
                    if tp in self.owned:
                        for message in messages:
                            self._dispatch(message)
                    elif messages and tp in self.consumer.assignment():
                        # fetched while its assignment was being recovered: read it again
                        # (a record is never passed over; its position moved past it)
                        self.consumer.seek(tp, messages[0].offset)
        finally:
            checkpoints.cancel()
            signals.cancel()
            lag.cancel()

    def _throttle(self, room: int) -> None:
        """Pause every partition while the buffer is full, and the admission topics' while
        it is half full (new work waits until the started work has room); resume the rest."""
        assert self.consumer is not None
        assignment = self.consumer.assignment()
        if room <= 0:
            wanted = set(assignment)
        elif self.admission_topics and room <= self.settings.max_buffered // 2:
            wanted = {tp for tp in assignment if tp.topic in self.admission_topics}
        else:
            wanted = set()
        paused = self.consumer.paused()
        if wanted != paused:
            if resumed := paused - wanted:
                self.consumer.resume(*resumed)
            if newly := wanted - paused:
                self.consumer.pause(*newly)

    def request_stop(self) -> None:
        """Fetch no more: `run` returns within one poll."""
        self._stopping = True

    async def stop(self) -> None:
        """Finish what was fetched, checkpoint, commit, leave the group (after `run`)."""
        self._stopping = True
        if self.consumer is None:
            return
        await self._drain()
        await self.checkpoint(everything=True)
        await self.handled.commit(self._handled_positions())
        await self.handled.stop()
        await self.consumer.stop()

    # -- records ------------------------------------------------------------------------

    def _dispatch(self, message: Any) -> None:
        self.progress.fetched(message.topic, message.partition, message.offset)
        key = record_key(message)
        previous = self.tails.get(key)
        self.store.started(key)
        task = asyncio.get_running_loop().create_task(self._handle(previous, message, key))
        self.tails[key] = task

    async def _handle(self, previous: asyncio.Task | None, message: Any, key: str) -> None:
        try:
            if previous is not None and not previous.done():
                await asyncio.wait((previous,))
            await self.records.handle(message, self.by_topic[message.topic])
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the engine itself failed: this offset can never be
            # committed, so stop; the restarted process reads the record again
            log.exception("the engine failed on a record; stopping")
            self.failed = exc
            self.on_fatal(exc)
            raise
        finally:
            self.store.finished(key)
            if self.tails.get(key) is asyncio.current_task():
                del self.tails[key]
        if (message.topic, message.partition) in self.progress.partitions:
            self.progress.done(message.topic, message.partition, message.offset)
        self.done += 1
        self.last_done_at = time.monotonic()

    async def _drain(self) -> None:
        while self.tails:
            await asyncio.wait(list(self.tails.values()))

    # -- checkpoints ----------------------------------------------------------------------

    async def _signal_handled_every(self) -> None:
        """Every SIGNAL_EVERY_S, the done prefix of each owned input partition to the
        handled group (engine/handled_signal.py), while this member holds its partitions."""
        while True:
            await asyncio.sleep(SIGNAL_EVERY_S)
            if self.rebalancing or self.recovering or self.membership_lost():
                continue
            await self.handled.commit(self._handled_positions())

    def _handled_positions(self) -> dict[TopicPartition, int]:
        return {
            TopicPartition(topic, number): position
            for (topic, number), position in self.progress.committable().items()
            if TopicPartition(topic, number) in self.owned
        }

    async def _checkpoint_every(self) -> None:
        """Every checkpoint_interval_s, or sooner once the loop has been idle for
        checkpoint_idle_s with something to write; idle for checkpoint_flush_idle_s, the
        tables written less often are written too (the changelogs the on-call tools read
        are then current whenever nothing is happening)."""
        reported_at = checkpointed_at = time.monotonic()
        interval, idle = self.settings.checkpoint_interval_s, self.settings.checkpoint_idle_s
        while True:
            await asyncio.sleep(min(idle, interval) / 4)
            now = time.monotonic()
            pending = self.last_done_at > checkpointed_at or bool(self.store.dirty)
            quiet = pending and now - self.last_done_at >= idle and now - checkpointed_at >= idle
            if not (now - checkpointed_at >= interval or quiet):
                continue
            checkpointed_at = now
            flush = quiet and now - self.last_done_at >= self.settings.checkpoint_flush_idle_s
            try:
                await self.checkpoint(everything=flush)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("checkpoint failed; the next one retries", error=repr(exc))
            if (now := time.monotonic()) - reported_at >= REPORT_EVERY_S and self.done:
                log.info(
                    "consume loop",
                    records_done=self.done,
                    records_per_s=round(self.done / (now - reported_at), 1),
                    in_flight=len(self.tails),
                    buffered=self.progress.outstanding(),
                    state_entries_written=self.state_writes,
                )
                reported_at, self.done, self.state_writes = now, 0, 0

    async def checkpoint(
        self, partitions: set[TopicPartition] | None = None, everything: bool = False
    ) -> None:
        """Changed state to the changelogs, then the done prefix of each input partition
        (of `partitions`, default the owned ones) committed behind it. `everything`: the
        tables written less often too (before partitions move or the process stops)."""
        async with self._checkpoint_lock:
            if self.membership_lost():  # another member may own the partitions: write nothing
                return
            committable = self.progress.committable()
            self.state_expired += self.store.expire(int(time.time() * 1000))
            writes = self.store.checkpoint_writes(time.monotonic(), everything)
            if writes:
                try:
                    await asyncio.gather(
                        *[
                            await self.producer.send_to(
                                w.topic, w.partition, w.key, w.value, w.headers
                            )
                            for w in writes
                        ]
                    )
                except KafkaError as exc:
                    self.store.checkpoint_failed(writes)
                    log.warning("state not written; commit held back", error=repr(exc))
                    return
                self.store.persisted(writes)
                self.state_writes += len(writes)
            floor = self.store.commit_floor()
            allowed = self.owned if partitions is None else partitions
            due = {}
            for (topic, number), position in committable.items():
                tp = TopicPartition(topic, number)
                position = min(position, floor.get((topic, number), position))
                if tp in allowed and self.committed.get(tp) != position:
                    due[tp] = position
            if due and self.consumer is not None:
                try:
                    await self.offsets.commit(self.consumer, due)
                    self.committed.update(due)
                except KafkaError as exc:
                    log.warning(
                        "offsets not committed; the next checkpoint retries", error=repr(exc)
                    )
            if time.monotonic() - self._pruned_at >= PRUNE_EVERY_S:  # a pass over every key
                self.store.prune_applied()
                self._pruned_at = time.monotonic()
            if time.monotonic() - self._heap_released_at >= HEAP_RELEASE_EVERY_S:
                self._release_heap()
                self._heap_released_at = time.monotonic()

    # -- rebalances -----------------------------------------------------------------------

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        """Before partitions move: finish their records, checkpoint and commit them, then
        forget their state: the next assignment restores every partition it gives, since
        another instance may have changed a partition's state in between (one that comes
        back is not taken as it was). If this instance was put out of the group (its
        session expired: another member may own these partitions already), nothing is
        written: its changes since the last checkpoint are dropped and done again by the
        owner from the committed offsets."""
        self.rebalancing = True
        self.owned = set()
        await self._drain()
        if self.membership_lost():
            log.warning("partitions lost (put out of the group): their state is dropped unwritten")
        else:
            await self.checkpoint(set(revoked), everything=True)
        numbers = {tp.partition for tp in revoked}
        self.progress.forget(numbers)
        self.store.drop_partitions(numbers & self.state_partitions)
        self.state_partitions -= numbers
        for tp in revoked:
            self.committed.pop(tp, None)

    def membership_lost(self) -> bool:
        """The group coordinator no longer knows this member (aiokafka resets its generation
        on UnknownMemberId / IllegalGeneration): its partitions may be another's now."""
        coordinator = getattr(self.consumer, "_coordinator", None)
        return getattr(coordinator, "generation", 0) == LOST_GENERATION

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        """After a rebalance: forget the partitions that went, recover the ones that came,
        seek where the offset store says."""
        numbers = {tp.partition for tp in assigned}
        self.recovering = True
        self.store.drop_partitions(self.state_partitions - numbers)
        self.state_partitions &= numbers
        try:
            arriving = numbers - self.state_partitions
            await recover_partitions(self.settings.bootstrap, self.store, arriving)
            await rebuild_views(self.settings.bootstrap, self.store, arriving, self.codec)
            for hook in self.arrival_hooks:
                await hook(arriving)
            assert self.consumer is not None
            for tp, position in (await self.offsets.starting_positions(list(assigned))).items():
                self.consumer.seek(tp, position)
        except Exception as exc:  # never run on partial state: stop, and start again
            log.error("state recovery failed; stopping", error=repr(exc))
            self.failed = exc
            self.on_fatal(exc)
            return  # stays rebalancing: nothing is fetched
        self.state_partitions = numbers
        self.owned = set(assigned)
        self.assignments += 1
        self.recovering = self.rebalancing = False
        log.info(
            "partitions assigned", partitions=sorted(f"{t.topic}-{t.partition}" for t in assigned)
        )


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, loop: ConsumeLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.loop.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.loop.assigned(set(assigned))
