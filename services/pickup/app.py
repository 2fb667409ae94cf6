"""Composition root of the pickup service: the carrier client and the `pickups` table wired
to the handlers (services/pickup/handlers.py): one consumer for the pickup commands and the
carrier's callback route."""

from __future__ import annotations

import os
import time
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
from services.eventing.topics import PICKUP_COMMANDS
from services.pickup import handlers
from services.pickup.carrier_client import CarrierClient, carrier_http
from services.pickup.handlers import SERVICE, Carrier, PickupPorts

DEFAULT_PORT = 8084


def wiring(ports: PickupPorts) -> Wiring:
    commands = Subscription(
        "pickup-commands",
        (PICKUP_COMMANDS.name,),
        partial(handlers.handle_pickup_command, ports),
        on_exhausted=partial(handlers.carrier_unreachable, ports),
    )
    callbacks = Route("POST", "/carrier/callbacks", partial(handlers.carrier_callback, ports))
    return Wiring((commands,), (callbacks,))


def build(settings: ServiceSettings, carrier: Carrier, signing_secret: bytes) -> ServiceParts:
    parts = build_parts(settings)
    ports = PickupPorts(
        answered=json_table(parts.app, "pickups"),
        carrier=carrier,
        signing_secret=signing_secret,
        publish=parts.publisher.publish,
        clock_s=lambda: int(time.time()),
    )
    serve(parts, wiring(ports))
    add_health_page(parts.app, SERVICE)
    add_openapi_page(parts.app, Path(__file__).with_name("openapi.json"))
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
