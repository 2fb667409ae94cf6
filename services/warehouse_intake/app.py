"""Composition root of warehouse intake: the `intakes` and `ledger` tables wired to the
handlers (services/warehouse_intake/handlers.py), one agent for the intake commands, one for
the stock movements (keyed sku@location) and the GET /ledger route."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from services.eventing.http_api import add_route
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
from services.eventing.topics import INTAKE_COMMANDS, STOCK_MOVEMENTS
from services.warehouse_intake import handlers
from services.warehouse_intake.handlers import SERVICE, IntakePorts

DEFAULT_PORT = 8086


def build(settings: ServiceSettings) -> ServiceParts:
    parts = build_parts(settings)
    app = parts.app
    ports = IntakePorts(intakes=json_table(app, "intakes"), ledger=json_table(app, "ledger"))

    @app.agent(raw_topic(app, INTAKE_COMMANDS.name), name="intake-commands", concurrency=1)
    async def intake_commands(stream: Any) -> None:
        await parts.consumer.run(stream, partial(handlers.take_in, ports))

    @app.agent(raw_topic(app, STOCK_MOVEMENTS.name), name="ledger", concurrency=1)
    async def stock_movements(stream: Any) -> None:
        await parts.consumer.run(
            stream, partial(handlers.book_movement, ports), keyed_by_return=False
        )

    ledger_view = while_tables_recover(app, partial(handlers.ledger_view, ports))
    add_route(app, "GET", "/ledger", ledger_view)
    add_health_page(app, SERVICE)
    add_openapi_page(app, Path(__file__).with_name("openapi.json"))
    return parts


def main() -> int:
    settings = ServiceSettings.from_env(SERVICE, DEFAULT_PORT)
    return run_worker(build(settings).app, SERVICE)
