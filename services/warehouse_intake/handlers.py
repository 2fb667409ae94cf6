"""Warehouse intake's handlers.

IntakeRequested → a disposition per item → one StockMovementsRecorded with all of them on
the stock-movements topic, keyed by warehouse_id → IntakeCompleted. A second handler applies
movements to the ledger table (entries keyed sku@warehouse, all of a warehouse's on its
partition, so each entry has one owner) at most once per movement_id. Event ids derive
from the command, so a redelivered command produces the same events and changes nothing.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.decisions.stock import inventory_ledger
from services.decisions.stock.disposition import movements_for, reversal_movements
from services.decisions.stock.disposition_rules import (
    DEFAULT_RULES,
    DispositionRules,
    item_facts_of,
)
from services.eventing.envelope import reply_record
from services.eventing.handler_contract import HttpAnswer, HttpRequest, Incoming, Outbound
from services.eventing.log_setup import get_logger

SERVICE = "warehouse-intake"
LEDGER_VIEW_ENTRIES = 1000
log = get_logger(__name__)


@dataclass
class IntakePorts:
    intakes: MutableMapping[str, Any]  # return_id -> the intake's movements (for reversal)
    ledger: MutableMapping[str, Any]  # sku@warehouse -> ledger entry (inventory_ledger.py)
    # how long a movement id is remembered against a second booking (inventory_ledger.py)
    dedupe_window_ms: int = inventory_ledger.DEDUPE_WINDOW_MS
    rules: DispositionRules = DEFAULT_RULES  # deploy/stock/dispositions.yaml


def intake_event(command: dict[str, Any], name: str, body: dict[str, Any], *id_parts: str) -> dict:
    return reply_record(command, name, body, SERVICE, *id_parts)


def movement_events(command: dict[str, Any], warehouse: str, movements: list[dict]) -> list:
    """One record for the ledger with every movement (none when nothing moves)."""
    if not movements:
        return []
    body = {"warehouse_id": warehouse, "movements": movements}
    record = intake_event(command, "StockMovementsRecorded", body, "movements")
    return [("StockMovementsRecorded", record, warehouse.encode())]


def intake_outcome(
    command: dict[str, Any], rules: DispositionRules = DEFAULT_RULES
) -> list[Outbound]:
    """Everything an IntakeRequested produces (pure; the same command → the same events)."""
    return_id = command["envelope"]["return_id"]
    warehouse = command["warehouse_id"]
    movements = movements_for(return_id, warehouse, command["items"], item_facts_of(command), rules)
    outbound: list[Outbound] = movement_events(command, warehouse, movements)
    outbound.append(
        (
            "IntakeCompleted",
            intake_event(
                command, "IntakeCompleted", {"warehouse_id": warehouse, "movements": movements}
            ),
        )
    )
    return outbound


def reversal_outcome(command: dict[str, Any], intake: dict[str, Any] | None) -> list[Outbound]:
    """What an IntakeReverseRequested produces; nothing to move when no intake happened."""
    return_id = command["envelope"]["return_id"]
    warehouse = (intake or {}).get("warehouse_id", "")
    movements = reversal_movements(return_id, warehouse, (intake or {}).get("movements", []))
    outbound: list[Outbound] = movement_events(command, warehouse, movements)
    outbound.append(
        ("IntakeReversed", intake_event(command, "IntakeReversed", {"movements": movements}))
    )
    return outbound


def fold_intake(intakes: MutableMapping[str, Any], name: str, record: dict[str, Any]) -> None:
    """The movements decided per return, as IntakeCompleted says (the `intakes` view is
    folded from intake.events: a reversal reads them)."""
    return_id = record["envelope"]["return_id"]
    if name == "IntakeCompleted" and intakes.get(return_id) is None:
        intakes[return_id] = {
            "warehouse_id": record["warehouse_id"],
            "movements": record["movements"],
        }


async def take_in(ports: IntakePorts, incoming: Incoming) -> list[Outbound]:
    command, return_id = incoming.record, incoming.return_id
    if incoming.name == "IntakeReverseRequested":
        outbound = reversal_outcome(command, ports.intakes.get(return_id))
        log.info("intake reversed", movements=len(outbound) - 1)
        return outbound
    outbound = intake_outcome(command, ports.rules)
    fold_intake(ports.intakes, *outbound[-1])
    log.debug("intake decided", movements=len(outbound) - 1)
    return outbound


async def book_movement(ports: IntakePorts, incoming: Incoming) -> list[Outbound]:
    at = incoming.record["envelope"]["occurred_at"]
    for movement in inventory_ledger.movements_of(incoming.name, incoming.record):
        moved = inventory_ledger.book(ports.ledger, movement, at, ports.dedupe_window_ms)
        log.debug("ledger", sku=movement["sku"], location=movement["location"], moved=moved)
    return []


async def ledger_view(ports: IntakePorts, request: HttpRequest) -> HttpAnswer:
    """GET /ledger[?sku=]: units on hand per sku and location and what the ledger
    applied."""
    sku = request.query.get("sku")
    entries = [e for _, e in ports.ledger.items() if not sku or e["sku"] == sku]
    shown = [
        {"sku": e["sku"], "location": location, "on_hand": units}
        for e in entries
        for location, units in sorted(inventory_ledger.locations_of(e).items())
    ]
    return HttpAnswer(
        200,
        {
            "entries": shown[:LEDGER_VIEW_ENTRIES],
            "movements_applied": sum(len(e["movement_ids"]) for e in entries),
            "duplicates_ignored": sum(e["duplicates_ignored"] for e in entries),
            "units_on_hand": sum(row["on_hand"] for row in shown),
        },
    )


def merged_ledgers(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """GET /ledger of every instance as one (each owns some skus' entries)."""
    entries = sorted(
        (row for part in parts for row in part["entries"]),
        key=lambda row: (row["sku"], row["location"]),
    )
    return {
        "entries": entries[:LEDGER_VIEW_ENTRIES],
        **{
            total: sum(part[total] for part in parts)
            for total in ("movements_applied", "duplicates_ignored", "units_on_hand")
        },
    }
