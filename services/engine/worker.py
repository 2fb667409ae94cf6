"""A service process from start to stop: its parts built by the composition root, the web
server, the consume loop, the timers, and a graceful stop on SIGTERM/SIGINT (finish what
was fetched, checkpoint, commit, leave the group).

    parts = build_parts(settings)            # producer, state store, web app
    parts.table("sagas")                     # a checkpointed table (changelog per table)
    parts.every(1.0, fire_due_timers)        # a timer
    serve(parts, wiring)                     # the consume loop and the routes
    run_service(...)                         # the process: until SIGTERM
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiokafka.errors import KafkaError

from services.engine import collector, loop_metrics
from services.engine.consume_loop import ConsumeLoop, OffsetStore
from services.engine.owner_routing import (
    OwnerForwarding,
    gathered_from_owners,
    routed_to_owner,
)
from services.engine.partition_owners import PartitionOwners
from services.engine.producer import RecordProducer
from services.engine.settings import ServiceSettings
from services.engine.state_store import StateStore, StateTable, TopicView
from services.engine.stored_value import Settles
from services.engine.web import (
    add_metrics_page,
    add_openapi_page,
    add_route,
    json_answer,
    new_web_app,
)
from services.eventing.avro_codec import AvroCodec
from services.eventing.handler_contract import (
    HttpAnswer,
    Outbound,
    Route,
    RouteHandler,
    Wiring,
    recovering_answer,
)
from services.eventing.log_setup import configure_logging, get_logger
from services.eventing.schema_catalogue import SchemaCatalogue
from services.eventing.topics import by_name

log = get_logger(__name__)

Timer = tuple[float, Callable[[], Awaitable[None]]]


@dataclass
class ServiceParts:
    """What a service's composition root builds on."""

    settings: ServiceSettings
    codec: AvroCodec
    producer: RecordProducer
    store: StateStore
    web: web.Application
    timers: list[Timer] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    loop: ConsumeLoop | None = None
    offsets: OffsetStore | None = None
    owners: PartitionOwners | None = None  # for routes answered by their key's owner
    arrival_hooks: list[Callable[[set[int]], Awaitable[None]]] = field(default_factory=list)
    forwarding: OwnerForwarding | None = None
    # more /health fields: name → what to show (the front door's admission measures)
    health_fields: dict[str, Callable[[], Any]] = field(default_factory=dict)

    def table(
        self,
        name: str,
        every_s: float | None = None,
        settles: Settles | None = None,
        expires: bool = False,
    ) -> StateTable:
        """A table checkpointed to "boomerang-<service>-<name>-changelog" (at most every
        `every_s` when given; restored values `settles` makes Settled kept so: `StateTable`);
        `expires`: an entry is removed the state retention after its last change."""
        changelog = f"{self.settings.group_id}-{name}-changelog"
        retention = self.settings.state_retention_ms if expires else None
        return self.store.table(name, changelog, every_s, settles, retention)

    def view(self, name: str, view: TopicView) -> StateTable:
        """A table with no changelog, rebuilt on assignment by folding `view.topics`; an
        entry is forgotten the state retention after its last change."""
        return self.store.view(name, view, self.settings.state_retention_ms)

    def every(self, seconds: float, action: Callable[[], Awaitable[None]]) -> None:
        self.timers.append((seconds, action))

    def on_partitions_arriving(self, hook: Callable[[set[int]], Awaitable[None]]) -> None:
        """`hook(partition numbers)` after a rebalance, before the loop is ready (a store kept
        outside the tables catches up for the partitions this instance now owns)."""
        self.arrival_hooks.append(hook)

    def on_stop(self, close: Callable[[], Awaitable[None]]) -> None:
        """Called once the loop has stopped (partner clients close their connections)."""
        self.closers.append(close)

    async def publish(self, outbound: Sequence[Outbound]) -> None:
        await self.producer.publish(outbound)

    async def publish_durably(self, outbound: Sequence[Outbound]) -> None:
        await self.producer.publish_durably(outbound)

    @property
    def ready(self) -> bool:
        return self.loop is not None and self.loop.ready

    def tables_recovering(self) -> HttpAnswer | None:
        """The 503 for a page that reads tables while they are recovered or rebalanced (a
        partial view would say "not found"); None once they are ready."""
        return None if self.ready else recovering_answer()


def build_parts(settings: ServiceSettings) -> ServiceParts:
    codec = AvroCodec(SchemaCatalogue.load())
    producer = RecordProducer(
        settings.bootstrap, settings.group_id, codec, linger_ms=settings.linger_ms
    )
    return ServiceParts(settings, codec, producer, StateStore(), new_web_app())


def while_tables_recover(
    parts: ServiceParts, handler: Callable[..., Awaitable[HttpAnswer]]
) -> Callable[..., Awaitable[HttpAnswer]]:
    async def answer(*args: Any, **kwargs: Any) -> HttpAnswer:
        return parts.tables_recovering() or await handler(*args, **kwargs)

    return answer


def serve(parts: ServiceParts, wiring: Wiring) -> None:
    """The consume loop over the wiring's subscriptions, and its routes."""
    parts.loop = ConsumeLoop(
        parts.settings,
        wiring.subscriptions,
        parts.codec,
        parts.producer,
        parts.store,
        on_fatal=lambda exc: os.kill(os.getpid(), signal.SIGTERM),
        offsets=parts.offsets,
        admission_topics=wiring.admission_topics,
        arrival_hooks=parts.arrival_hooks,
    )
    loop_metrics.watch_loop(parts.loop.readings)
    for route in wiring.routes:
        if route.owner_key is not None or route.merge is not None:
            handler = owner_answers(parts, route, wiring.subscriptions[0].topics[0])
        elif route.reads_tables:
            handler = while_tables_recover(parts, route.handler)
        else:
            handler = route.handler
        add_route(parts.web, route.method, route.path, handler)


def owner_answers(parts: ServiceParts, route: Route, topic: str) -> RouteHandler:
    """`route` answered by the instance owning its key's partition of `topic` (the loop's
    inputs are co-partitioned: one instance owns partition p of each), or gathered from
    every instance and merged."""
    loop = parts.loop
    assert loop is not None
    settings = parts.settings
    if parts.owners is None:
        parts.owners = PartitionOwners(
            settings.bootstrap,
            settings.group_id,
            topic,
            f"{settings.group_id}-{settings.instance_id}",
        )
        parts.forwarding = OwnerForwarding(settings.advertised_url)
        parts.on_stop(parts.owners.stop)
        parts.on_stop(parts.forwarding.stop)
    owners, forwarding = parts.owners, parts.forwarding
    assert forwarding is not None
    declared = by_name(topic).partitions

    async def owner_of(partition: int) -> str | None:
        return await owners.owner_of(partition, loop.assignments)

    async def all_owners() -> Mapping[int, str]:
        return await owners.all_owners(loop.assignments)

    if route.merge is not None:
        return gathered_from_owners(
            route.handler,
            route.merge,
            route.method,
            route.path,
            owned=loop.owned_partitions,
            partitions=lambda: loop.partition_count(topic, declared),
            all_owners=all_owners,
            forwarding=forwarding,
        )
    assert route.owner_key is not None
    return routed_to_owner(
        route.handler,
        route.owner_key,
        route.method,
        route.path,
        owned=loop.owned_partitions,
        partitions=lambda: loop.partition_count(topic, declared),
        owner_of=owner_of,
        forwarding=forwarding,
        before_forwarding=route.before_forwarding,
    )


def build_service(
    settings: ServiceSettings, wire: Callable[[ServiceParts], Wiring], openapi: Path
) -> ServiceParts:
    """A service's parts serving what `wire` builds over them, with its health page and
    its OpenAPI document."""
    parts = build_parts(settings)
    serve(parts, wire(parts))
    add_health_page(parts)
    add_metrics_page(parts.web)
    add_openapi_page(parts.web, openapi)
    return parts


def add_health_page(parts: ServiceParts) -> None:
    async def health(request: web.Request) -> web.Response:
        assigned = len(parts.loop.owned) if parts.loop else 0
        owned = parts.loop.owned_partitions() if parts.loop else None
        body = {
            "service": parts.settings.service,
            "instance": parts.settings.instance_id,
            "ready": parts.ready,
            "assigned_partitions": assigned,
            # the partition numbers whose state is here (null while they move)
            "partitions": sorted(owned) if owned is not None else None,
            "skipped_as_applied": parts.loop.records.skipped_as_applied if parts.loop else 0,
            # entries per table and keys whose partition is known (bounded: docs/scaling.md)
            "state_entries": {name: len(t) for name, t in parts.store.tables.items()},
            "keys_tracked": len(parts.store.partition_of),
            "state_expired": parts.loop.state_expired if parts.loop else 0,
            **{name: shown() for name, shown in parts.health_fields.items()},
        }
        return json_answer(body, 200 if parts.ready else 503)

    parts.web.router.add_get("/health", health)


def run_service(
    service: str, default_port: int, build: Callable[[ServiceSettings], ServiceParts]
) -> int:
    """A service's process: its settings from the environment, built and run until stopped."""
    configure_logging(service)
    parts = build(ServiceSettings.from_env(service, default_port))
    collector.tune(parts.settings.gc_young_objects)
    return asyncio.run(run_until_stopped(parts))


async def run_until_stopped(parts: ServiceParts) -> int:
    settings = parts.settings
    stop = asyncio.Event()
    running = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        running.add_signal_handler(number, stop.set)
    running.add_signal_handler(signal.SIGUSR1, log_task_stacks)  # for a consumer that stalls
    runner = web.AppRunner(parts.web, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, settings.web_host, settings.web_port).start()
    log.info("serving", host=settings.web_host, port=settings.web_port)
    loop = parts.loop
    assert loop is not None
    if not await _until_started(parts.producer.start, "producer", stop):
        return 0
    if not await _until_started(loop.start, "consumer", stop):
        await parts.producer.stop()
        return 0
    tasks = [asyncio.create_task(_every(seconds, action)) for seconds, action in parts.timers]
    consuming = asyncio.create_task(loop.run())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait((consuming, stopped), return_when=asyncio.FIRST_COMPLETED)
    log.info("stopping")
    for task in tasks:
        task.cancel()
    loop.request_stop()
    await asyncio.wait((consuming,))
    await loop.stop()
    for close in parts.closers:
        try:
            await close()
        except Exception as exc:
            log.warning("closing failed", error=repr(exc))
    await runner.cleanup()
    await parts.producer.stop()
    log.info("stopped")
    if consuming.done() and not consuming.cancelled() and consuming.exception() is not None:
        log.error("the consume loop failed", error=repr(consuming.exception()))
        return 1
    return 1 if loop.failed is not None else 0


async def _until_started(
    start: Callable[[], Awaitable[None]], what: str, stop: asyncio.Event
) -> bool:
    """Start `what`, waiting out a broker that is not reachable yet; False if stopped first."""
    pause = 0.5
    while not stop.is_set():
        try:
            await start()
            return True
        except KafkaError as exc:
            log.warning("broker not reachable; start retried", part=what, error=repr(exc))
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)
    return False


async def _every(seconds: float, action: Callable[[], Awaitable[None]]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await action()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("timer failed", action=getattr(action, "__name__", repr(action)))


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
