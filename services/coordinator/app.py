"""Composition root of the coordinator: a thin Faust agent around the pure saga.

Saga state lives in a Faust table backed by a compacted changelog topic
(boomerang-coordinator-sagas-changelog), so a restarted coordinator continues where it
stopped. `GET /returns/{return_id}` serves a saga's state and history from that table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.coordinator import saga
from services.eventing.avro_codec import Decoded
from services.eventing.envelope import now_ms
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
)
from services.eventing.topics import (
    INSPECTION_EVENTS,
    INTAKE_EVENTS,
    PICKUP_EVENTS,
    REFUND_EVENTS,
    RETURNS_EVENTS,
    SAGA_CHANGELOG,
)

SERVICE = "coordinator"
DEFAULT_PORT = 8085
INPUTS = (RETURNS_EVENTS, PICKUP_EVENTS, INSPECTION_EVENTS, INTAKE_EVENTS, REFUND_EVENTS)
log = get_logger(__name__)


def build(settings: ServiceSettings) -> ServiceParts:
    parts = build_parts(settings)
    app = parts.app
    sagas = json_table(app, "sagas", SAGA_CHANGELOG.partitions)
    inputs = raw_topic(app, *(topic.name for topic in INPUTS))

    async def handle(decoded: Decoded, message: Any) -> list[saga.Command]:
        return_id = decoded.record["envelope"]["return_id"]
        stored = sagas.get(return_id)
        state = saga.SagaState.from_json(stored) if stored else None
        transition = saga.decide(state, decoded.name, decoded.record, now_ms())
        if not transition.duplicate:
            sagas[return_id] = transition.state.to_json()
        log.info(
            "saga event",
            status=str(transition.state.status),
            duplicate=transition.duplicate,
            ignored=transition.ignored,
            commands=[name for name, _ in transition.commands],
        )
        return list(transition.commands)

    @app.agent(inputs, name="saga", concurrency=1)
    async def drive_sagas(stream: Any) -> None:
        await parts.consumer.run(stream, handle, accepts=set(saga.CONSUMED_EVENTS))

    @app.page("/returns/{return_id}")
    async def return_status(web: Any, request: Any, return_id: str) -> Any:
        stored = sagas.get(return_id)
        if not stored:
            return web.json({"error": "not_found", "detail": f"no return {return_id}"}, status=404)
        return web.json(saga.status_view(saga.SagaState.from_json(stored)))

    @app.page("/returns")
    async def list_returns(web: Any, request: Any) -> Any:
        wanted = request.query.get("status")
        counts: dict[str, int] = {}
        matching = []
        for return_id, stored in sagas.items():
            status = stored["status"]
            counts[status] = counts.get(status, 0) + 1
            if wanted and status == wanted:
                matching.append(return_id)
        return web.json({"counts": counts, "return_ids": sorted(matching)[:1000]})

    add_health_page(app, SERVICE)
    add_openapi_page(app, Path(__file__).with_name("openapi.json"))
    return parts


def main() -> int:
    settings = ServiceSettings.from_env(SERVICE, DEFAULT_PORT)
    parts = build(settings)
    return run_worker(parts.app, SERVICE)
