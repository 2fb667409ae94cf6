"""Composition root of the coordinator: the pure saga (services/decisions/saga) behind one
agent, its state in a Faust table backed by a compacted changelog topic
(boomerang-coordinator-sagas-changelog), so a restarted coordinator continues where it
stopped; a timer loop for the sagas' durable timers; the GET /returns pages (handlers in
services/coordinator/handlers.py)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from services.coordinator import handlers
from services.coordinator.handlers import SERVICE, CoordinatorPorts
from services.coordinator.saga_settings import saga_config_from_env
from services.decisions import saga
from services.eventing.envelope import now_ms
from services.eventing.handler_contract import Route, Subscription, Wiring
from services.eventing.log_setup import get_logger
from services.eventing.openapi_docs import add_openapi_page
from services.eventing.service_runtime import (
    ServiceParts,
    ServiceSettings,
    add_health_page,
    build_parts,
    json_table,
    run_worker,
    serve,
)
from services.eventing.topics import (
    INSPECTION_EVENTS,
    INTAKE_EVENTS,
    PICKUP_EVENTS,
    REFUND_EVENTS,
    RETURNS_EVENTS,
    SAGA_CHANGELOG,
    SAGA_EVENTS,
)

DEFAULT_PORT = 8085
# SAGA_EVENTS carries the saga's own timeouts (SagaStepTimedOut) back to it.
INPUTS = (
    RETURNS_EVENTS,
    PICKUP_EVENTS,
    INSPECTION_EVENTS,
    INTAKE_EVENTS,
    REFUND_EVENTS,
    SAGA_EVENTS,
)
TIMER_SCAN_S = 1.0
log = get_logger(__name__)


def wiring(ports: CoordinatorPorts) -> Wiring:
    sagas = Subscription(
        "saga",
        tuple(topic.name for topic in INPUTS),
        partial(handlers.drive_saga, ports),
        accepts=saga.CONSUMED_EVENTS,
    )
    status = Route(
        "GET", "/returns/{return_id}", partial(handlers.return_status, ports), reads_tables=True
    )
    listing = Route("GET", "/returns", partial(handlers.list_returns, ports), reads_tables=True)
    return Wiring((sagas,), (status, listing))


def build(settings: ServiceSettings, config: saga.SagaConfig | None = None) -> ServiceParts:
    parts = build_parts(settings)
    ports = CoordinatorPorts(
        sagas=json_table(parts.app, "sagas", SAGA_CHANGELOG.partitions),
        config=config or saga.SagaConfig(),
        clock_ms=now_ms,
    )
    serve(parts, wiring(ports))

    @parts.app.timer(TIMER_SCAN_S)
    async def fire_due_timers() -> None:
        if due := handlers.due_timer_events(ports):
            log.info("timers due", count=len(due))
            await parts.consumer.publish_durably(due)

    add_health_page(parts.app, SERVICE)
    add_openapi_page(parts.app, Path(__file__).with_name("openapi.json"))
    return parts


def main() -> int:
    settings = ServiceSettings.from_env(SERVICE, DEFAULT_PORT)
    parts = build(settings, saga_config_from_env())
    return run_worker(parts.app, SERVICE)
