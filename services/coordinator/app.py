"""Composition root of the coordinator: a thin Faust agent around the pure saga.

Saga state lives in a Faust table backed by a compacted changelog topic
(boomerang-coordinator-sagas-changelog), so a restarted coordinator continues where it
stopped. `GET /returns/{return_id}` serves a saga's state and history from that table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.coordinator.saga_settings import saga_config_from_env
from services.decisions import saga
from services.eventing.avro_codec import Decoded
from services.eventing.envelope import deterministic_event_id, new_envelope, now_ms
from services.eventing.log_setup import get_logger
from services.eventing.openapi_docs import add_openapi_page
from services.eventing.service_runtime import (
    Outbound,
    ServiceParts,
    ServiceSettings,
    add_health_page,
    build_parts,
    json_table,
    raw_topic,
    run_worker,
    tables_recovering,
)
from services.eventing.topics import (
    INSPECTION_EVENTS,
    INTAKE_EVENTS,
    ORDER_REFUND_LEDGER,
    PICKUP_EVENTS,
    REFUND_EVENTS,
    RETURNS_EVENTS,
    SAGA_CHANGELOG,
    SAGA_EVENTS,
)

SERVICE = "coordinator"
TERMINAL = frozenset(str(status) for status in saga.TERMINAL)
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
# Commands for the order refund ledger are keyed by order_ref (one owner per order).
KEYED_BY_ORDER = frozenset(ORDER_REFUND_LEDGER.record_types)
TIMER_SCAN_S = 1.0
REFIRE_AFTER_MS = 15_000  # a fired timer not handled yet is fired again (same event id)
log = get_logger(__name__)


def timeout_event(state: dict[str, Any], timer: dict[str, Any]) -> saga.Command:
    """The event a due timer becomes; its id derives from the timer: firing twice is one event."""
    return_id = state["return_id"]
    record = {
        "envelope": new_envelope(
            "SagaStepTimedOut",
            return_id,
            SERVICE,
            correlation_id=state.get("correlation_id") or return_id,
            event_id=deterministic_event_id(return_id, "timer", timer["id"]),
        ),
        "step": timer["step"],
        "timer_id": timer["id"],
        "deadline_at": timer["due_at"],
    }
    return "SagaStepTimedOut", record


def keyed(command: saga.Command) -> Outbound:
    name, record = command
    if name in KEYED_BY_ORDER:
        return name, record, record["order_ref"].encode()
    return command


def build(settings: ServiceSettings, config: saga.SagaConfig | None = None) -> ServiceParts:
    config = config or saga.SagaConfig()
    parts = build_parts(settings)
    app = parts.app
    sagas = json_table(app, "sagas", SAGA_CHANGELOG.partitions)
    inputs = raw_topic(app, *(topic.name for topic in INPUTS))

    async def handle(decoded: Decoded, message: Any) -> list[Outbound]:
        return_id = decoded.record["envelope"]["return_id"]
        stored = sagas.get(return_id)
        state = saga.SagaState.from_json(stored) if stored else None
        transition = saga.decide(state, decoded.name, decoded.record, now_ms(), config)
        if not transition.duplicate:
            sagas[return_id] = transition.state.to_json()
        log.info(
            "saga event",
            status=str(transition.state.status),
            duplicate=transition.duplicate,
            ignored=transition.ignored,
            commands=[name for name, _ in transition.commands],
        )
        already_fired = len(state.rules_fired) if state else 0
        for rule in transition.state.rules_fired[already_fired:]:  # rules are only appended
            log.info("rule fired", **rule)
        return [keyed(command) for command in transition.commands]

    @app.agent(inputs, name="saga", concurrency=1)
    async def drive_sagas(stream: Any) -> None:
        await parts.consumer.run(stream, handle, accepts=set(saga.CONSUMED_EVENTS))

    fired: dict[tuple[str, str], int] = {}

    @app.timer(TIMER_SCAN_S)
    async def fire_due_timers() -> None:
        """Durable timers: deadlines and retry times live in each saga's state (so they
        survive restarts); this loop turns the due ones into SagaStepTimedOut events."""
        now = now_ms()
        due = []
        for return_id, stored in list(sagas.items()):
            timer = stored.get("timer") if stored else None
            if not timer or stored["status"] in TERMINAL or timer["due_at"] > now:
                continue
            if now - fired.get((return_id, timer["id"]), 0) < REFIRE_AFTER_MS:
                continue
            fired[(return_id, timer["id"])] = now
            due.append(timeout_event(stored, timer))
        if due:
            log.info("timers due", count=len(due))
            await parts.consumer.publish_durably(due)
        if len(fired) > 100_000:
            fired.clear()

    @app.page("/returns/{return_id}")
    async def return_status(web: Any, request: Any, return_id: str) -> Any:
        if (recovering := tables_recovering(app, web)) is not None:
            return recovering
        stored = sagas.get(return_id)
        if not stored:
            return web.json({"error": "not_found", "detail": f"no return {return_id}"}, status=404)
        return web.json(saga.status_view(saga.SagaState.from_json(stored)))

    @app.page("/returns")
    async def list_returns(web: Any, request: Any) -> Any:
        if (recovering := tables_recovering(app, web)) is not None:
            return recovering
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
    parts = build(settings, saga_config_from_env())
    return run_worker(parts.app, SERVICE)
