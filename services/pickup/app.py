"""Composition root of the pickup service: the carrier client and the `pickups` table wired
to the handlers (services/pickup/handlers.py): one consumer for the pickup commands and the
carrier's callback route."""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path

from services.engine import worker as runtime
from services.engine.state_store import TopicView
from services.eventing.handler_contract import Route, Subscription, Wiring
from services.eventing.topics import PICKUP_COMMANDS, PICKUP_EVENTS
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


def build(
    settings: runtime.ServiceSettings, carrier: Carrier, signing_secret: bytes
) -> runtime.ServiceParts:
    def wire(parts: runtime.ServiceParts) -> Wiring:
        return wiring(
            PickupPorts(
                answered=parts.view(
                    "pickups", TopicView((PICKUP_EVENTS.name,), handlers.fold_answers)
                ),
                carrier=carrier,
                signing_secret=signing_secret,
                publish=parts.publish,
                clock_s=lambda: int(time.time()),
            )
        )

    return runtime.build_service(settings, wire, Path(__file__).with_name("openapi.json"))


def main() -> int:
    carrier = CarrierClient(
        carrier_http(
            os.environ.get("CARRIER_URL", "http://127.0.0.1:8091"),
            float(os.environ.get("CARRIER_TIMEOUT_S", "5")),
        )
    )
    secret = os.environ.get("CARRIER_SIGNING_SECRET", "dev-carrier-secret").encode()

    def built(settings: runtime.ServiceSettings) -> runtime.ServiceParts:
        parts = build(settings, carrier, secret)
        parts.on_stop(carrier.aclose)
        return parts

    return runtime.run_service(SERVICE, DEFAULT_PORT, built)
