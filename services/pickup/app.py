"""Composition root of the pickup service.

Consumes pickup commands: books (or cancels) with the carrier over HTTP, idempotency key
`{return_id}-pickup`, and emits PickupScheduled / PickupCancelled with event ids derived
from the command, so a retried command yields the same event. Receives the carrier's
signed status callbacks on POST /carrier/callbacks and emits PickupAttemptFailed /
PickupCompleted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from services.decisions.saga import NOT_CANCELLED_PREFIX
from services.eventing.avro_codec import Decoded
from services.eventing.envelope import reply_record
from services.eventing.http_api import ApiError, json_endpoint, parse_json_object, post_page
from services.eventing.log_setup import event_context, get_logger
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
)
from services.eventing.topics import PICKUP_COMMANDS
from services.pickup.callback_parsing import callback_event
from services.pickup.carrier_client import CarrierClient, carrier_http
from services.pickup.carrier_signature import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    verify,
)

SERVICE = "pickup"
DEFAULT_PORT = 8084
log = get_logger(__name__)


def _reply(command: dict[str, Any], name: str, body: dict[str, Any]) -> Outbound:
    return name, reply_record(command, name, body, SERVICE)


def build(settings: ServiceSettings, carrier: CarrierClient, signing_secret: bytes) -> ServiceParts:
    parts = build_parts(settings)
    app = parts.app

    answered = json_table(app, "pickups")  # return_id -> {command event id: [name, record]}

    async def handle(decoded: Decoded, message: Any) -> list[Outbound]:
        """A command seen before re-emits its stored answer without calling the carrier
        (a replayed topic books nothing; the carrier's idempotency key is the second net)."""
        command_id = decoded.record["envelope"]["event_id"]
        return_id = decoded.record["envelope"]["return_id"]
        done = answered.get(return_id) or {}
        if command_id in done:
            name, record = done[command_id]
            log.info("command seen before: stored answer re-emitted", result=name)
            return [(name, record)]
        outbound = await answer(decoded)
        if outbound:
            answered[return_id] = {**done, command_id: list(outbound[0])}
        return outbound

    async def answer(decoded: Decoded) -> list[Outbound]:
        command = decoded.record
        return_id = command["envelope"]["return_id"]
        if decoded.name == "PickupRequested":
            booking = await carrier.book(
                command["idempotency_key"],
                return_id,
                command["buyer_id"],
                command["pickup_address"],
                command["parcel_count"],
            )
            log.info("pickup booked", booking_id=booking.booking_id)
            return [
                _reply(
                    command,
                    "PickupScheduled",
                    {
                        "carrier": booking.carrier,
                        "booking_id": booking.booking_id,
                        "tracking_number": booking.tracking_number,
                        "window_start": booking.window_start,
                        "window_end": booking.window_end,
                    },
                )
            ]
        if decoded.name == "PickupCancelRequested":
            booking_id = command.get("booking_id")
            outcome = "cancelled"
            if booking_id:
                outcome = await carrier.cancel(command["idempotency_key"], booking_id)
            log.info("pickup cancel answered", booking_id=booking_id, outcome=outcome)
            reason = command["reason"]
            if outcome == "already_collected":
                reason = f"{NOT_CANCELLED_PREFIX}: the carrier had already collected the parcel"
            return [
                _reply(command, "PickupCancelled", {"booking_id": booking_id, "reason": reason})
            ]
        return []

    async def carrier_unreachable(decoded: Decoded, error: Exception) -> list[Outbound]:
        if decoded.name != "PickupRequested":
            return []  # an unconfirmed cancellation is retried by the saga's timer
        return [
            _reply(
                decoded.record,
                "PickupAttemptFailed",
                {
                    "booking_id": "",
                    "attempt_no": decoded.record["envelope"]["attempt"],
                    "failure_reason": "CARRIER_ERROR",
                    "detail": str(error)[:200],
                    "retryable": True,
                },
            )
        ]

    @app.agent(raw_topic(app, PICKUP_COMMANDS.name), name="pickup-commands", concurrency=1)
    async def pickups(stream: Any) -> None:
        await parts.consumer.run(stream, handle, on_exhausted=carrier_unreachable)

    @json_endpoint
    async def carrier_callback(web: Any, request: Any) -> Any:
        body = await request.read()
        try:
            verify(
                signing_secret,
                request.headers.get(TIMESTAMP_HEADER),
                request.headers.get(SIGNATURE_HEADER),
                body,
                int(time.time()),
            )
        except SignatureError as exc:
            raise ApiError(401, "bad_signature", str(exc)) from exc
        name, record = callback_event(parse_json_object(body), SERVICE)
        with event_context(record["envelope"]):
            await parts.publisher.publish([(name, record)])
            log.info("carrier callback", event_type=name)
        return web.json({"accepted": True, "event_id": record["envelope"]["event_id"]}, status=202)

    post_page(app, "/carrier/callbacks", carrier_callback)
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
