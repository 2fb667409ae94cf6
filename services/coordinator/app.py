"""Composition root of the coordinator: the pure saga (services/decisions/saga) behind one
agent, its state in a Faust table backed by a compacted changelog topic
(boomerang-coordinator-sagas-changelog), so a restarted coordinator continues where it
stopped; a timer loop for the sagas' durable timers; the GET /returns pages."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from services.coordinator import handlers
from services.coordinator.handlers import SERVICE, CoordinatorPorts
from services.coordinator.saga_settings import saga_config_from_env
from services.decisions import saga
from services.eventing.envelope import now_ms
from services.eventing.http_api import add_route
from services.eventing.log_setup import get_logger
from services.eventing.openapi_docs import add_openapi_page
from services.eventing.service_runtime import (
    ServiceParts,
    ServiceSettings,
    add_health_page,
    build_parts,
    json_table,
    raw_topic,
    run_worker,
    while_tables_recover,
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


def build(settings: ServiceSettings, config: saga.SagaConfig | None = None) -> ServiceParts:
    parts = build_parts(settings)
    app = parts.app
    ports = CoordinatorPorts(
        sagas=json_table(app, "sagas", SAGA_CHANGELOG.partitions),
        config=config or saga.SagaConfig(),
        clock_ms=now_ms,
    )
    inputs = raw_topic(app, *(topic.name for topic in INPUTS))

    @app.agent(inputs, name="saga", concurrency=1)
    async def drive_sagas(stream: Any) -> None:
        await parts.consumer.run(
            stream, partial(handlers.drive_saga, ports), accepts=set(saga.CONSUMED_EVENTS)
        )

    @app.timer(TIMER_SCAN_S)
    async def fire_due_timers() -> None:
        if due := handlers.due_timer_events(ports):
            log.info("timers due", count=len(due))
            await parts.consumer.publish_durably(due)

    return_status = while_tables_recover(app, partial(handlers.return_status, ports))
    add_route(app, "GET", "/returns/{return_id}", return_status)
    add_route(
        app, "GET", "/returns", while_tables_recover(app, partial(handlers.list_returns, ports))
    )
    add_health_page(app, SERVICE)
    add_openapi_page(app, Path(__file__).with_name("openapi.json"))
    return parts


def main() -> int:
    settings = ServiceSettings.from_env(SERVICE, DEFAULT_PORT)
    parts = build(settings, saga_config_from_env())
    return run_worker(parts.app, SERVICE)
