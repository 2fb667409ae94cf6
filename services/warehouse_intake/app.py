"""Composition root of warehouse intake: the `intakes` and `ledger` tables wired to the
handlers (services/warehouse_intake/handlers.py): one consumer for the intake commands, one
for the stock movements (keyed sku@location) and the GET /ledger route."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from services.eventing.handler_contract import Route, Subscription, Wiring
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
from services.eventing.topics import INTAKE_COMMANDS, STOCK_MOVEMENTS
from services.warehouse_intake import handlers
from services.warehouse_intake.handlers import SERVICE, IntakePorts

DEFAULT_PORT = 8086


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
    ledger = Route("GET", "/ledger", partial(handlers.ledger_view, ports), reads_tables=True)
    return Wiring((commands, movements), (ledger,))


def build(settings: ServiceSettings) -> ServiceParts:
    parts = build_parts(settings)
    ports = IntakePorts(
        intakes=json_table(parts.app, "intakes"), ledger=json_table(parts.app, "ledger")
    )
    serve(parts, wiring(ports))
    add_health_page(parts.app, SERVICE)
    add_openapi_page(parts.app, Path(__file__).with_name("openapi.json"))
    return parts


def main() -> int:
    settings = ServiceSettings.from_env(SERVICE, DEFAULT_PORT)
    return run_worker(build(settings).app, SERVICE)
