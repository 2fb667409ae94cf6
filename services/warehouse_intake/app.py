"""Composition root of warehouse intake.

IntakeRequested → a disposition per item → one StockMovementRecorded per item on the
stock-movements topic, keyed by sku@location → IntakeCompleted. A second agent applies
movements to the ledger table (keyed sku@location, so each entry has one owner) at most
once per movement_id. Event ids derive from the command, so a redelivered command
produces the same events and changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.decisions.stock import inventory_ledger
from services.decisions.stock.disposition import movements_for, reversal_movements
from services.eventing.avro_codec import Decoded
from services.eventing.envelope import reply_record
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
from services.eventing.topics import INTAKE_COMMANDS, STOCK_MOVEMENTS

SERVICE = "warehouse-intake"
DEFAULT_PORT = 8086
log = get_logger(__name__)


def _event(command: dict[str, Any], name: str, body: dict[str, Any], *id_parts: str) -> dict:
    return reply_record(command, name, body, SERVICE, *id_parts)


def _movement_events(command: dict[str, Any], warehouse: str, movements: list[dict]) -> list:
    return [
        (
            "StockMovementRecorded",
            _event(
                command,
                "StockMovementRecorded",
                {"warehouse_id": warehouse, "movement": m},
                m["movement_id"],
            ),
            inventory_ledger.ledger_key(m["sku"], m["location"]).encode(),
        )
        for m in movements
    ]


def intake_outcome(command: dict[str, Any]) -> list[Outbound]:
    """Everything an IntakeRequested produces (pure; the same command → the same events)."""
    return_id = command["envelope"]["return_id"]
    warehouse = command["warehouse_id"]
    movements = movements_for(return_id, warehouse, command["items"])
    outbound: list[Outbound] = _movement_events(command, warehouse, movements)
    outbound.append(
        (
            "IntakeCompleted",
            _event(command, "IntakeCompleted", {"warehouse_id": warehouse, "movements": movements}),
        )
    )
    return outbound


def reversal_outcome(command: dict[str, Any], intake: dict[str, Any] | None) -> list[Outbound]:
    """What an IntakeReverseRequested produces; nothing to move when no intake happened."""
    return_id = command["envelope"]["return_id"]
    warehouse = (intake or {}).get("warehouse_id", "")
    movements = reversal_movements(return_id, warehouse, (intake or {}).get("movements", []))
    outbound: list[Outbound] = _movement_events(command, warehouse, movements)
    outbound.append(("IntakeReversed", _event(command, "IntakeReversed", {"movements": movements})))
    return outbound


def build(settings: ServiceSettings) -> ServiceParts:
    parts = build_parts(settings)
    app = parts.app
    intakes = json_table(app, "intakes")  # return_id -> the intake's movements (for reversal)
    ledger = json_table(app, "ledger")  # sku@location -> ledger entry

    async def take_in(decoded: Decoded, message: Any) -> list[Outbound]:
        command = decoded.record
        return_id = command["envelope"]["return_id"]
        if decoded.name == "IntakeReverseRequested":
            outbound = reversal_outcome(command, intakes.get(return_id))
            log.info("intake reversed", movements=len(outbound) - 1)
            return outbound
        outbound = intake_outcome(command)
        if intakes.get(return_id) is None:
            movements = outbound[-1][1]["movements"]
            intakes[return_id] = {"warehouse_id": command["warehouse_id"], "movements": movements}
        log.info("intake decided", movements=len(outbound) - 1)
        return outbound

    async def book(decoded: Decoded, message: Any) -> list[Outbound]:
        movement = decoded.record["movement"]
        key = inventory_ledger.ledger_key(movement["sku"], movement["location"])
        entry, moved = inventory_ledger.apply(ledger.get(key), movement)
        ledger[key] = entry
        log.info("ledger", key=key, moved=moved, on_hand=entry["on_hand"])
        return []

    @app.agent(raw_topic(app, INTAKE_COMMANDS.name), name="intake-commands", concurrency=1)
    async def intake_commands(stream: Any) -> None:
        await parts.consumer.run(stream, take_in)

    @app.agent(raw_topic(app, STOCK_MOVEMENTS.name), name="ledger", concurrency=1)
    async def stock_movements(stream: Any) -> None:
        await parts.consumer.run(stream, book, keyed_by_return=False)

    @app.page("/ledger")
    async def ledger_view(web: Any, request: Any) -> Any:
        if (recovering := tables_recovering(app, web)) is not None:
            return recovering
        sku = request.query.get("sku")
        entries = [e for _, e in ledger.items() if not sku or e["sku"] == sku]
        return web.json(
            {
                "entries": [{k: e[k] for k in ("sku", "location", "on_hand")} for e in entries][
                    :1000
                ],
                "movements_applied": sum(len(e["movement_ids"]) for e in entries),
                "duplicates_ignored": sum(e["duplicates_ignored"] for e in entries),
                "units_on_hand": sum(e["on_hand"] for e in entries),
            }
        )

    add_health_page(app, SERVICE)
    add_openapi_page(app, Path(__file__).with_name("openapi.json"))
    return parts


def main() -> int:
    settings = ServiceSettings.from_env(SERVICE, DEFAULT_PORT)
    return run_worker(build(settings).app, SERVICE)
