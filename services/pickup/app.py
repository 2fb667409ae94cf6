"""Composition root of the pickup service: the carrier client and the `pickups` table wired
to the handlers (services/pickup/handlers.py), one agent for the pickup commands and the
carrier's callback route."""

from __future__ import annotations

import os
import time
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
)
from services.eventing.topics import PICKUP_COMMANDS
from services.pickup import handlers
from services.pickup.carrier_client import CarrierClient, carrier_http
from services.pickup.handlers import SERVICE, Carrier, PickupPorts

DEFAULT_PORT = 8084


def build(settings: ServiceSettings, carrier: Carrier, signing_secret: bytes) -> ServiceParts:
    parts = build_parts(settings)
    app = parts.app
    ports = PickupPorts(
        answered=json_table(app, "pickups"),
        carrier=carrier,
        signing_secret=signing_secret,
        publish=parts.publisher.publish,
        clock_s=lambda: int(time.time()),
    )

    @app.agent(raw_topic(app, PICKUP_COMMANDS.name), name="pickup-commands", concurrency=1)
    async def pickups(stream: Any) -> None:
        await parts.consumer.run(
            stream,
            partial(handlers.handle_pickup_command, ports),
            on_exhausted=partial(handlers.carrier_unreachable, ports),
        )

    add_route(app, "POST", "/carrier/callbacks", partial(handlers.carrier_callback, ports))
    add_health_page(app, SERVICE)
    add_openapi_page(app, Path(__file__).with_name("openapi.json"))
    return parts


def main() -> int:
    settings = ServiceSettings.from_env(SERVICE, DEFAULT_PORT)
    carrier = CarrierClient(
        carrier_http(
            os.environ.get("CARRIER_URL", "http://127.0.0.1:8091"),
            float(os.environ.get("CARRIER_TIMEOUT_S", "5")),
        )
    )
    secret = os.environ.get("CARRIER_SIGNING_SECRET", "dev-carrier-secret").encode()
    return run_worker(build(settings, carrier, secret).app, SERVICE)
