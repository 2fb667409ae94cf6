"""How every Boomerang service runs: a Faust app per process, our own durable producer,
and one consume loop (decode → pure handler → publish) with dead-lettering.

Agents stay thin: they hand each decoded event to a handler and publish what it returns.
Agents run with concurrency 1 (faust-streaming #606: concurrency > 1 can commit past
unfinished events). Outbound events go through our own aiokafka producer (acks=all,
idempotence on). The loop does not wait for the broker after each event: it hands the
writes to the producer and goes on with the next event, while `acknowledge` waits for the
acknowledgements in order; an input offset becomes committable only once the writes of it
and of every event before it are on the broker — its tables' changelog writes included
(`table_writes`) — so no offset is committed whose effects are not durable (waiting per
event capped each service at ~5 returns/s: see docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import faust
import mode
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.eventing.avro_codec import AvroCodec, CodecError
from services.eventing.dead_letters import FailedRecord, dead_letter_headers, dead_letter_topic_name
from services.eventing.envelope import EnvelopeError, check_envelope
from services.eventing.event_publisher import EventPublisher, producer_settings
from services.eventing.handler_contract import (
    DomainRejection,
    EventHandler,
    ExhaustedHandler,
    HttpAnswer,
    Incoming,
    Outbound,
    TransientFailure,
    UnhandledError,
    Wiring,
    recovering_answer,
)
from services.eventing.log_setup import configure_logging, event_context, get_logger
from services.eventing.offset_guard import OffsetGuard, Verdict
from services.eventing.openapi_docs import add_openapi_page
from services.eventing.schema_catalogue import SchemaCatalogue
from services.eventing.settings import bootstrap_servers
from services.eventing.table_writes import TrackedTable, collecting
from services.eventing.topics import PARTITIONS

log = get_logger(__name__)

GROUP_START_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class ServiceSettings:
    service: str
    web_port: int
    web_host: str = "127.0.0.1"
    bootstrap: str = ""
    state_dir: Path = Path(".cache/state")
    instance_id: str = "1"
    retry_attempts: int = 5
    retry_base_delay_s: float = 0.2
    retry_max_delay_s: float = 5.0
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, service: str, default_port: int) -> ServiceSettings:
        prefix = service.upper().replace("-", "_")
        return cls(
            service=service,
            web_port=int(os.environ.get(f"{prefix}_PORT") or default_port),
            web_host=os.environ.get("BOOMERANG_BIND_HOST", "127.0.0.1"),
            bootstrap=bootstrap_servers(),
            state_dir=Path(os.environ.get("BOOMERANG_STATE_DIR", ".cache/state")),
            instance_id=os.environ.get("BOOMERANG_INSTANCE_ID", "1"),
            retry_attempts=int(os.environ.get("BOOMERANG_RETRY_ATTEMPTS", "5")),
        )


def make_app(settings: ServiceSettings) -> faust.App:
    datadir = (settings.state_dir / f"{settings.service}-{settings.web_port}").resolve()
    datadir.parent.mkdir(parents=True, exist_ok=True)
    return faust.App(
        f"boomerang-{settings.service}",
        broker=f"kafka://{settings.bootstrap}",
        store="memory://",
        topic_partitions=PARTITIONS,
        topic_allow_declare=True,
        producer_acks=-1,
        # Faust's own producer writes the tables' changelogs. Its default linger of 0 sends
        # a produce request per table write; 5 ms (as our producer) lets them share batches.
        producer_linger=0.005,
        Table=TrackedTable,  # its changelog writes count among an input's writes
        consumer_auto_offset_reset="earliest",
        web_enabled=True,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        datadir=str(datadir),
        broker_commit_interval=1.0,
        # A crashed member is noticed after 10 s and its partitions move to the restarted
        # process. (Static membership would skip that wait, but with faust-streaming 0.15.3
        # a static member that rejoins without a rebalance left some partitions unfetched:
        # measured here, see docs/design.md.)
        canonical_url=f"http://{settings.service}-{settings.instance_id}.boomerang",
        broker_session_timeout=10.0,
        # After a broker restart the first metadata can say "topic missing": the consumer is
        # then assigned nothing until it refreshes metadata (5 min by default). Measured in
        # the chaos run: the inspection service sat with 0 partitions. Refresh often.
        consumer_metadata_max_age_ms=5_000,
        producer_metadata_max_age_ms=5_000,
        broker_heartbeat_interval=3.0,
        stream_wait_empty=False,
    )


def json_table(app: faust.App, name: str, partitions: int = PARTITIONS) -> Any:
    """A Faust table of JSON values keyed by str, backed by the compacted changelog
    "{app id}-{name}-changelog". Written only from agents (the event's partition)."""
    return app.Table(
        name,
        default=None,
        partitions=partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="json"),
    )


def raw_topic(app: faust.App, *names: str) -> Any:
    """An input topic. acks=False: Faust neither tracks nor commits its offsets; the consume
    loop commits what it has handled (see offset_guard)."""
    return app.topic(*names, key_serializer="raw", value_serializer="raw", acks=False)


class Publisher(mode.Service):
    """Our own idempotent, acks=all producer, started and stopped with the Faust app."""

    def __init__(self, settings: ServiceSettings, codec: AvroCodec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.codec = codec
        self.producer: AIOKafkaProducer | None = None
        self.events: EventPublisher | None = None
        self._start_lock = asyncio.Lock()

    async def on_start(self) -> None:
        await self._ensure_producer()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        # Agents may receive events before Faust starts extra services: start on first use too.
        async with self._start_lock:
            if self.producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.settings.bootstrap,
                    client_id=f"boomerang-{self.settings.service}",
                    **producer_settings(),
                )
                await producer.start()
                self.producer = producer
                self.events = EventPublisher(producer, self.codec)
        return self.producer

    async def on_stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def reset(self) -> None:
        """Drop a producer that keeps failing; the next publish starts a fresh one."""
        async with self._start_lock:
            producer, self.producer = self.producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def publish(self, outbound: Sequence[Outbound]) -> None:
        """Write every record and wait until the broker acknowledged all of them."""
        await asyncio.gather(*await self.send_all(outbound))

    async def send_all(self, outbound: Sequence[Outbound]) -> list[asyncio.Future]:
        """Hand every record to the producer at once (they share its batches); the futures
        resolve when the broker acknowledged each. Per partition the producer (idempotent)
        keeps the order they were given in."""
        await self._ensure_producer()
        assert self.events is not None
        return [
            await self.events.send(name, record, key=key[0] if key else None)
            for name, record, *key in outbound
        ]

    async def publish_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        producer = await self._ensure_producer()
        await producer.send_and_wait(topic, value=value, key=key, headers=headers)


@dataclass(frozen=True)
class PendingWrites:
    """The records one input event led to, handed to the producer but maybe not yet
    acknowledged: the input's offset is committable only once `acknowledge` saw them on
    the broker."""

    futures: tuple[asyncio.Future, ...] = ()
    outbound: tuple[Outbound, ...] = ()
    table_writes: tuple[asyncio.Future, ...] = ()  # the tables' changelog writes


NOTHING_PENDING = PendingWrites()
# input events handled ahead of their writes' acknowledgements (bounded: back-pressure)
MAX_UNACKNOWLEDGED = 500


@dataclass
class LoopClock:
    """Where a consume loop's time goes: waiting for the next event vs handling events.
    Reported every REPORT_EVERY_S while events flow (a loop that mostly waits is starved by
    its input, one that mostly handles is the bottleneck)."""

    mark: float
    waiting_s: float = 0.0
    handling_s: float = 0.0
    events: int = 0
    reported_at: float = 0.0

    REPORT_EVERY_S = 10.0

    def event_arrived(self, now: float) -> float:
        self.waiting_s += now - self.mark
        return now

    def event_done(self, started: float, now: float) -> bool:
        self.handling_s += now - started
        self.events += 1
        self.mark = now
        if not self.reported_at:
            self.reported_at = started
        return now - self.reported_at >= self.REPORT_EVERY_S

    def report(self, unacknowledged: int) -> dict[str, Any]:
        window = self.waiting_s + self.handling_s
        figures = {
            "events": self.events,
            "events_per_s": round(self.events / window, 1) if window else 0.0,
            "handling_share": round(self.handling_s / window, 3) if window else 0.0,
            "handling_ms_per_event": round(1000 * self.handling_s / self.events, 2),
            "unacknowledged": unacknowledged,
        }
        self.waiting_s = self.handling_s = 0.0
        self.events = 0
        self.reported_at = self.mark
        return figures


class EventConsumer:
    """The one consume loop every agent uses."""

    def __init__(
        self, app: faust.App, settings: ServiceSettings, codec: AvroCodec, publisher: Publisher
    ) -> None:
        self.app = app
        self.settings = settings
        self.codec = codec
        self.publisher = publisher

    async def run(
        self,
        stream: Any,
        handler: EventHandler,
        accepts: set[str] | None = None,
        keyed_by_return: bool = True,
        on_exhausted: ExhaustedHandler | None = None,
    ) -> None:
        """`on_exhausted(incoming, error)` turns a transient failure that outlived its retries
        into events (e.g. a retryable RefundFailed the saga retries later); without it the
        record is dead-lettered."""
        guard = OffsetGuard()
        topics = set(getattr(getattr(stream, "channel", None), "topics", ()) or ())
        progress = asyncio.create_task(self.keep_progress(guard, topics))
        unacknowledged: asyncio.Queue = asyncio.Queue(maxsize=MAX_UNACKNOWLEDGED)
        acknowledging = asyncio.create_task(self.acknowledge(unacknowledged, guard))
        try:
            await self._consume(
                stream, guard, handler, accepts, keyed_by_return, on_exhausted, unacknowledged
            )
        finally:
            progress.cancel()
            acknowledging.cancel()

    async def acknowledge(self, unacknowledged: asyncio.Queue, guard: OffsetGuard) -> None:
        """In the order events were handled: wait for the broker's acknowledgement of their
        writes, then make their offsets committable. A write that failed is written again
        (same event ids: consumers deduplicate) until it is on the broker."""
        while True:
            tp, offset, pending = await unacknowledged.get()
            if pending.futures:
                try:
                    await asyncio.gather(*pending.futures)
                except Exception as exc:  # any failure: this task must not die (it would
                    # leave every later offset uncommittable and the loop blocked)
                    log.warning("a write was not acknowledged; writing again", error=repr(exc))
                    await self.publish_durably(pending.outbound)
            if pending.table_writes:
                try:
                    await asyncio.gather(*pending.table_writes)
                except Exception as exc:
                    await self.stop_for_a_lost_table_write(exc)
            guard.durable(tp, offset)

    async def stop_for_a_lost_table_write(self, exc: Exception) -> None:
        """A table change is in memory but not in its changelog: this offset and every later
        one stay uncommitted, and the process stops; the restarted one recovers the table
        from the changelog and reads the input again."""
        log.error("a table write was not acknowledged: stopping to read it again", error=repr(exc))
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.Event().wait()  # never marks anything durable again

    async def keep_progress(
        self, guard: OffsetGuard, topics: set[str], every_s: float = 1.0
    ) -> None:
        """Commit what was handled without a hole, re-seek gaps whose seek got lost, and
        re-seek partitions that have unread records but deliver none."""
        committed: dict[Any, int] = {}
        rounds = 0
        while True:
            await asyncio.sleep(every_s)
            rounds += 1
            consumer = self.app.consumer
            try:
                assigned = consumer.assignment()
                if rounds % 5 == 0:
                    await self._unstall(guard, [tp for tp in assigned if tp.topic in topics])
                for tp in [tp for tp in guard.committable() if tp not in assigned]:
                    guard.forget(tp)
                    committed.pop(tp, None)
                for tp, offset in guard.due_reseeks(time.monotonic()).items():
                    await self._seek_back(tp, offset, "re-seeking a gap that is still open")
                due = {
                    tp: offset
                    for tp, offset in guard.committable().items()
                    if committed.get(tp) != offset and tp in assigned
                }
                if due and await consumer._commit(due):  # runs on Faust's consumer thread
                    committed.update(due)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a rebalance mid-commit: the next round retries
                log.warning("offset commit postponed", error=repr(exc))

    async def _unstall(self, guard: OffsetGuard, partitions: list[Any]) -> None:
        if not partitions:
            return
        ends = await self.app.consumer.highwaters(*partitions)
        now = time.monotonic()
        for tp in partitions:
            if not guard.knows_start(tp) and (start := await self._group_start(tp)) is not None:
                guard.start_at(tp, start)
            seek_to = guard.stalled(tp, now, ends.get(tp))
            if seek_to is not None:
                await self._seek_back(
                    tp,
                    seek_to,
                    "partition has unread records but delivers none; seeking",
                    end_offset=ends.get(tp),
                )

    async def _group_start(self, tp: Any) -> int | None:
        """The group's committed offset for `tp` as the broker has it, else the log start
        (where `auto_offset_reset=earliest` begins); None if the broker does not answer in
        time (asked again with the next record). Faust's `_committed_offset` cannot tell
        "never committed" from 0. Both calls run on Faust's consumer thread."""
        thread = self.app.consumer._thread
        try:
            async with asyncio.timeout(GROUP_START_TIMEOUT_S):
                committed = await thread.call_thread(thread._ensure_consumer().committed, tp)
                if committed is None:
                    committed = (await self.app.consumer.earliest_offsets(tp))[tp]
        except (TimeoutError, KafkaError) as exc:
            log.warning(
                "group start unknown", topic=tp.topic, partition=tp.partition, error=repr(exc)
            )
            return None
        return committed

    async def _seek_back(
        self, tp: Any, offset: int, why: str, level: str = "warning", **facts: Any
    ) -> None:
        """Seek on Faust's consumer thread (seek_wait): Consumer.seek() touches aiokafka
        from this thread and stalled the fetcher (seen on replays)."""
        getattr(log, level)(why, topic=tp.topic, partition=tp.partition, offset=offset, **facts)
        await self.app.consumer.seek_wait({tp: offset})

    async def _consume(
        self,
        stream: Any,
        guard: OffsetGuard,
        handler: EventHandler,
        accepts: set[str] | None,
        keyed_by_return: bool,
        on_exhausted: ExhaustedHandler | None,
        unacknowledged: asyncio.Queue,
    ) -> None:
        clock = LoopClock(time.perf_counter())
        async for event in stream.events():
            started = clock.event_arrived(time.perf_counter())
            try:
                message = event.message
                tp = message.tp
                if not guard.knows_start(tp) and (start := await self._group_start(tp)) is not None:
                    guard.start_at(tp, start)
                verdict = guard.check(tp, message.offset, time.monotonic())
                if verdict is Verdict.SEEK:
                    await self._seek_back(
                        tp,
                        guard.expected(tp),
                        "offset gap: the stream skipped records; seeking back to re-read them",
                        level="error",
                        got_offset=message.offset,
                    )
                    continue
                if verdict is Verdict.SKIP:
                    continue
                pending = await self.process(
                    message, handler, accepts, keyed_by_return, on_exhausted
                )
                guard.handled(tp, message.offset)
                await unacknowledged.put((tp, message.offset, pending))
            finally:  # also after `continue`
                if clock.event_done(started, time.perf_counter()):
                    log.info("consume loop", **clock.report(unacknowledged.qsize()))

    async def process(
        self,
        message: Any,
        handler: EventHandler,
        accepts: set[str] | None,
        keyed_by_return: bool = True,
        on_exhausted: ExhaustedHandler | None = None,
    ) -> PendingWrites:
        """Handle one input record: its writes (and its tables' changelog writes) are handed
        to the producer and returned, acknowledged later (see `acknowledge`); dead letters
        are written before returning."""
        with collecting() as table_writes:
            pending = await self._process(message, handler, accepts, keyed_by_return, on_exhausted)
        if table_writes:
            pending = replace(pending, table_writes=tuple(table_writes))
        return pending

    async def _process(
        self,
        message: Any,
        handler: EventHandler,
        accepts: set[str] | None,
        keyed_by_return: bool,
        on_exhausted: ExhaustedHandler | None,
    ) -> PendingWrites:
        record = FailedRecord(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
            headers=tuple((k, bytes(v)) for k, v in (message.headers or ())),
        )
        try:
            decoded = self.codec.decode(message.value)
            check_envelope(
                decoded.name, decoded.record, key=message.key if keyed_by_return else None
            )
        except (CodecError, EnvelopeError) as exc:
            await self.dead_letter(record, exc)
            return NOTHING_PENDING
        if accepts is not None and decoded.name not in accepts:
            log.debug("event not for this consumer", event_type=decoded.name)
            return NOTHING_PENDING
        incoming = Incoming(decoded.name, decoded.record, message.key)
        with event_context(decoded.record["envelope"], topic=message.topic):
            delay = self.settings.retry_base_delay_s
            for attempt in range(1, self.settings.retry_attempts + 1):
                try:
                    outbound = await handler(incoming)
                except DomainRejection as exc:
                    await self.dead_letter(record, exc)
                    return NOTHING_PENDING
                except TransientFailure as exc:
                    if attempt == self.settings.retry_attempts:
                        if on_exhausted is None:
                            await self.dead_letter(record, exc)
                        else:
                            log.warning("transient failure outlived its retries", error=str(exc))
                            await self.publish_durably(await on_exhausted(incoming, exc))
                        return NOTHING_PENDING
                    pause = min(delay, self.settings.retry_max_delay_s) * random.uniform(0.5, 1.5)
                    log.warning(
                        "transient failure, retrying",
                        attempt=attempt,
                        error=str(exc),
                        retry_in_s=round(pause, 2),
                    )
                    await asyncio.sleep(pause)
                    delay *= 2
                    continue
                except Exception as exc:
                    # A bug met by this record: park it where a person can redrive it after
                    # the fix, rather than killing the agent or skipping silently.
                    log.exception("unexpected error while handling an event")
                    await self.dead_letter(record, UnhandledError(f"{type(exc).__name__}: {exc}"))
                    return NOTHING_PENDING
                try:
                    return await self.send_durably(outbound)
                except (CodecError, EnvelopeError) as exc:  # the handler built a bad record
                    log.exception("handler produced an invalid record")
                    await self.dead_letter(record, exc)
                return NOTHING_PENDING
        return NOTHING_PENDING

    async def send_durably(self, outbound: Sequence[Outbound]) -> PendingWrites:
        """Hand the writes to the producer without waiting for the broker; if the producer
        cannot even take them, wait until they are on the broker (`publish_durably`)."""
        if not outbound:
            return NOTHING_PENDING
        try:
            futures = await self.publisher.send_all(outbound)
        except KafkaError as exc:
            log.warning("producer refused the writes; waiting for the broker", error=repr(exc))
            await self.publish_durably(outbound)
            return NOTHING_PENDING
        return PendingWrites(tuple(futures), tuple(outbound))

    async def publish_durably(self, outbound: Sequence[Outbound]) -> None:
        """Publish, waiting out a broker that is down: the input event is not acknowledged
        (so its offset is not committed) until its effects are on the broker."""
        pause = 0.2
        failures = 0
        while True:
            try:
                await self.publisher.publish(outbound)
                return
            except KafkaError as exc:
                failures += 1
                log.warning(
                    "broker unavailable; publish retried",
                    error=repr(exc),
                    failures=failures,
                    retry_in_s=pause,
                )
                if failures % 5 == 0:
                    await self.publisher.reset()
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    async def dead_letter(self, record: FailedRecord, error: BaseException) -> None:
        topic = dead_letter_topic_name(record.topic)
        headers = dead_letter_headers(record, error, self.settings.service)
        pause = 0.2
        while True:
            try:
                await self.publisher.publish_raw(topic, record.key, record.value, headers)
                break
            except KafkaError as exc:
                log.warning("broker unavailable; dead letter retried", error=repr(exc))
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
        log.warning(
            "dead-lettered",
            dlq=topic,
            error_class=type(error).__name__,
            error=str(error)[:300],
            source_partition=record.partition,
            source_offset=record.offset,
        )


@dataclass
class ServiceParts:
    """What a service's composition root builds."""

    settings: ServiceSettings
    app: faust.App
    codec: AvroCodec
    publisher: Publisher
    consumer: EventConsumer


def build_parts(settings: ServiceSettings) -> ServiceParts:
    app = make_app(settings)
    codec = AvroCodec(SchemaCatalogue.load())
    publisher = Publisher(settings, codec)
    app.add_dependency(publisher)  # started and stopped with the app
    consumer = EventConsumer(app, settings, codec, publisher)
    return ServiceParts(settings, app, codec, publisher, consumer)


def tables_recovering(app: faust.App) -> HttpAnswer | None:
    """A 503 answer while the tables are still being recovered from their changelogs.

    A page that reads a table during recovery would show a partial view (a saga "not
    found", a ledger missing movements); callers answer this instead when it is not None.
    """
    if app.tables.recovery.completed.is_set() and not app.rebalancing:
        return None
    return recovering_answer()


def while_tables_recover(
    app: faust.App, handler: Callable[..., Awaitable[HttpAnswer]]
) -> Callable[..., Awaitable[HttpAnswer]]:
    """`handler` for a page that reads tables: the recovering 503 until they are recovered."""

    async def answer(*args: Any, **kwargs: Any) -> HttpAnswer:
        return tables_recovering(app) or await handler(*args, **kwargs)

    return answer


def serve(parts: ServiceParts, wiring: Wiring) -> None:
    """One agent per subscription (one event at a time, in partition order) and the routes."""
    from services.eventing.http_api import add_route

    app = parts.app
    for subscription in wiring.subscriptions:

        async def consume(stream: Any, subscription: Any = subscription) -> None:
            await parts.consumer.run(
                stream,
                subscription.handler,
                accepts=set(subscription.accepts) if subscription.accepts is not None else None,
                keyed_by_return=subscription.keyed_by_return,
                on_exhausted=subscription.on_exhausted,
            )

        channel = raw_topic(app, *subscription.topics)
        app.agent(channel, name=subscription.name, concurrency=1)(consume)
    for route in wiring.routes:
        handler = while_tables_recover(app, route.handler) if route.reads_tables else route.handler
        add_route(app, route.method, route.path, handler)


def build_service(
    settings: ServiceSettings, wire: Callable[[ServiceParts], Wiring], openapi: Path
) -> ServiceParts:
    """A service's parts serving the consumers and routes `wire` builds over them, with its
    health page and its OpenAPI document."""
    parts = build_parts(settings)
    serve(parts, wire(parts))
    add_health_page(parts.app, settings.service)
    add_openapi_page(parts.app, openapi)
    return parts


def run_service(
    service: str, default_port: int, build: Callable[[ServiceSettings], ServiceParts]
) -> int:
    """A service's process: its settings from the environment, built and run until stopped."""
    return run_worker(build(ServiceSettings.from_env(service, default_port)).app, service)


def add_health_page(app: faust.App, service: str) -> None:
    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        assigned = len(app.consumer.assignment()) if app.consumer else 0
        recovered = app.tables.recovery.completed.is_set()
        # one process per service here: with no partition it would consume nothing
        ready = recovered and not app.rebalancing and assigned > 0
        return web.json(
            {"service": service, "ready": ready, "assigned_partitions": assigned},
            status=200 if ready else 503,
        )


class ServiceWorker(faust.Worker):
    """A Faust worker whose logs go through Boomerang's structlog configuration."""

    def __init__(self, app: faust.App, service: str, **kwargs: Any) -> None:
        self.service_name = service
        super().__init__(app, quiet=True, redirect_stdouts=False, **kwargs)
        self.spinner = None  # a terminal spinner has no place in JSON log files

    def _setup_logging(self) -> None:
        configure_logging(self.service_name)

    async def on_first_start(self) -> None:
        await super().on_first_start()
        # `kill -USR1 <pid>`: every asyncio task's stack in the log, for a stuck consumer.
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGUSR1, lambda: log_consumer_state(self.app)
        )


def log_consumer_state(app: Any) -> None:
    """Task stacks and the Faust consumer's fetch bookkeeping, for a consumer that stalls."""
    log_task_stacks()
    consumer = app.consumer

    def tps(items: Any) -> list[str]:
        return sorted(f"{tp.topic}-{tp.partition}" for tp in (items or ()))

    log.warning(
        "consumer state",
        assigned=tps(consumer.assignment()),
        active=tps(getattr(consumer, "_active_partitions", None)),
        paused=tps(getattr(consumer, "_paused_partitions", None)),
        buffered=tps(getattr(consumer, "_buffered_partitions", None)),
        read_offsets={
            f"{tp.topic}-{tp.partition}": offset
            for tp, offset in getattr(consumer, "_read_offset", {}).items()
        },
        flow_suspended=consumer.suspend_flow.is_set()
        if hasattr(consumer, "suspend_flow")
        else None,
        flow_control_suspended=app.flow_control.is_active() is False,
    )


def log_task_stacks() -> None:
    """Each task's await chain, outermost first (task.get_stack() stops at one frame)."""
    for task in asyncio.all_tasks():
        chain = []
        awaited: Any = task.get_coro()
        while awaited is not None and len(chain) < 40:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                chain.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        log.warning("task stack", task=task.get_name(), stack=chain)


def run_worker(app: faust.App, service: str) -> int:
    configure_logging(service)
    worker = ServiceWorker(app, service, loglevel=os.environ.get("BOOMERANG_LOG_LEVEL", "INFO"))
    worker.execute_from_commandline()
    return 0
