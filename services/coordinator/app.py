"""Composition root of the coordinator: the pure saga (services/decisions/saga) behind one
consumer, its state in a table checkpointed to a compacted changelog topic
(boomerang-coordinator-sagas-changelog), so a restarted coordinator continues where it
stopped; a timer loop for the sagas' durable timers; the GET /returns pages (handlers in
services/coordinator/handlers.py)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from services.coordinator import handlers, saga_metrics
from services.coordinator.handlers import INPUTS, SERVICE, CoordinatorPorts
from services.coordinator.saga_archive import SqliteArchive, catch_up
from services.coordinator.saga_settings import saga_config_from_env
from services.decisions import saga
from services.decisions.policy.policy_rules import policy_digest
from services.engine import worker as runtime
from services.engine.due_timers import DueTimers
from services.engine.global_table import GlobalTable
from services.eventing.avro_codec import AvroCodec
from services.eventing.envelope import now_ms
from services.eventing.handler_contract import Route, Subscription, Wiring
from services.eventing.log_setup import get_logger
from services.eventing.request_keys import path_parameter
from services.eventing.topics import POLICY_SNAPSHOTS, RETURNS_EVENTS, SAGA_ARCHIVE

DEFAULT_PORT = 8085
TIMER_SCAN_S = 1.0
ARCHIVE_SCAN_S = 5.0  # finished sagas past their retention archived this often
# A saga changes with each of its ~8 events over a few seconds: its two tables are written
# every 5 s, not at every 2 s checkpoint (1.58 writes of each per return at 100/s measured
# with 2 s), so most returns are written once or twice. The commit waits for them; a
# restart handles at most those seconds again (the steps are idempotent).
SAGA_WRITTEN_EVERY_S = 5.0
log = get_logger(__name__)


def wiring(ports: CoordinatorPorts) -> Wiring:
    sagas = Subscription(
        "saga",
        tuple(topic.name for topic in INPUTS),
        partial(handlers.drive_saga, ports),
        accepts=saga.CONSUMED_EVENTS | {"SagaArchived"},
    )
    status = Route(
        "GET",
        "/returns/{return_id}",
        partial(handlers.return_status, ports),
        owner_key=path_parameter("return_id"),
    )
    listing = Route(
        "GET", "/returns", partial(handlers.list_returns, ports), merge=handlers.merged_listings
    )
    # a new return (returns.events) waits while the coordinator is busy with started ones
    return Wiring((sagas,), (status, listing), admission_topics=frozenset({RETURNS_EVENTS.name}))


def build(
    settings: runtime.ServiceSettings, config: saga.SagaConfig | None = None
) -> runtime.ServiceParts:
    def wire(parts: runtime.ServiceParts) -> Wiring:
        policies = GlobalTable(
            parts.settings.bootstrap,
            POLICY_SNAPSHOTS.name,
            POLICY_SNAPSHOTS.partitions,
            partial(policy_json_of, parts.codec),
            client_id=f"{parts.settings.group_id}-policies",
        )
        parts.on_stop(policies.stop)
        config_used = config or saga.SagaConfig()
        sagas = parts.table(
            "sagas",
            every_s=SAGA_WRITTEN_EVERY_S,
            settles=partial(handlers.settled_saga, config_used),
        )
        settings = parts.settings
        archive = SqliteArchive(
            Path(settings.state_dir) / f"{settings.group_id}-{settings.instance_id}-archive.db",
            SAGA_ARCHIVE.partitions,
        )
        ports = CoordinatorPorts(
            sagas=sagas,
            config=config_used,
            clock_ms=now_ms,
            policies=policies,
            timers=DueTimers(reloads=lambda: sagas.reloads),
            archive=archive,
            archive_timers=DueTimers(reloads=lambda: sagas.reloads),
            owned_partitions=lambda: parts.loop.owned_partitions() if parts.loop else None,
            figures=saga_metrics.record_figures,
        )
        saga_metrics.SAGA_TABLE.sagas = lambda: sagas

        async def archive_arriving(partitions: set[int]) -> None:
            await catch_up(archive, settings.bootstrap, SAGA_ARCHIVE.name, partitions, parts.codec)

        async def archive_finished_sagas() -> None:
            if due := handlers.archive_due_records(ports):
                log.info("finished sagas archived", count=len(due))
                await parts.publish_durably(due)

        async def close_archive() -> None:
            archive.close()

        parts.on_partitions_arriving(archive_arriving)
        parts.every(ARCHIVE_SCAN_S, archive_finished_sagas)
        parts.on_stop(close_archive)

        async def fire_due_timers() -> None:
            if due := handlers.due_timer_events(ports):
                log.info("timers due", count=len(due))
                await parts.publish_durably(due)

        parts.every(TIMER_SCAN_S, fire_due_timers)

        return wiring(ports)

    return runtime.build_service(settings, wire, Path(__file__).with_name("openapi.json"))


def policy_json_of(codec: AvroCodec, value: bytes) -> str:
    """The policy a PolicySnapshotPublished record holds, checked against its digest
    (ValueError, CodecError among them, for a record that is not one or does not match)."""
    decoded = codec.decode(value)
    if decoded.name != "PolicySnapshotPublished":
        raise ValueError(f"{decoded.name} on {POLICY_SNAPSHOTS.name}")
    policy_json = str(decoded.record["policy_json"])
    if policy_digest(policy_json) != decoded.record["policy_digest"]:
        raise ValueError(f"policy {decoded.record['policy_digest']} does not match its digest")
    return policy_json


def main() -> int:
    config = saga_config_from_env()
    return runtime.run_service(SERVICE, DEFAULT_PORT, lambda settings: build(settings, config))
