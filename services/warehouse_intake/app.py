"""Composition root of warehouse intake: the `intakes` and `ledger` tables wired to the
handlers (services/warehouse_intake/handlers.py): one consumer for the intake commands, one
for the stock movements (keyed by warehouse; ledger entries sku@warehouse) and the GET
/ledger route."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import yaml

from services.decisions.stock import inventory_ledger
from services.decisions.stock.disposition_rules import DispositionRules, parse_disposition_rules
from services.engine import worker as runtime
from services.engine.state_store import TopicView
from services.eventing.handler_contract import Route, Subscription, Wiring
from services.eventing.topics import INTAKE_COMMANDS, INTAKE_EVENTS, STOCK_MOVEMENTS
from services.warehouse_intake import handlers
from services.warehouse_intake.handlers import SERVICE, IntakePorts

DEFAULT_PORT = 8086
# A ledger entry (sku@warehouse) changes with every return of that sku: written once a
# minute, not at every checkpoint (measured 2.25 changelog records per return at 50/s).
# Its input offsets are committed no further than its oldest unwritten change.
LEDGER_WRITTEN_EVERY_S = 60.0


def wiring(ports: IntakePorts) -> Wiring:
    commands = Subscription(
        "intake-commands", (INTAKE_COMMANDS.name,), partial(handlers.take_in, ports)
    )
    movements = Subscription(
        "ledger",
        (STOCK_MOVEMENTS.name,),
        partial(handlers.book_movement, ports),
        keyed_by_return=False,
    )
    ledger = Route(
        "GET", "/ledger", partial(handlers.ledger_view, ports), merge=handlers.merged_ledgers
    )
    return Wiring((commands, movements), (ledger,))


RULES_FILE = Path(__file__).resolve().parents[2] / "deploy" / "stock" / "dispositions.yaml"


def load_disposition_rules(path: Path | None = None) -> DispositionRules:
    """DISPOSITION_RULES_FILE (deploy/stock/dispositions.yaml); a bad file stops the start."""
    chosen = path or Path(os.environ.get("DISPOSITION_RULES_FILE") or RULES_FILE)
    return parse_disposition_rules(yaml.safe_load(chosen.read_text(encoding="utf-8")))


def build(settings: runtime.ServiceSettings) -> runtime.ServiceParts:
    def wire(parts: runtime.ServiceParts) -> Wiring:
        intakes = parts.view("intakes", TopicView((INTAKE_EVENTS.name,), handlers.fold_intake))
        ledger = parts.table("ledger", every_s=LEDGER_WRITTEN_EVERY_S)
        window_ms = int(
            os.environ.get("INVENTORY_DEDUPE_WINDOW_MS") or inventory_ledger.DEDUPE_WINDOW_MS
        )
        return wiring(IntakePorts(intakes, ledger, window_ms, load_disposition_rules()))

    return runtime.build_service(settings, wire, Path(__file__).with_name("openapi.json"))


def main() -> int:
    return runtime.run_service(SERVICE, DEFAULT_PORT, build)
