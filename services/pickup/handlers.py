"""The pickup service's handlers: carrier bookings and cancellations for the saga's commands,
and the carrier's signed status callbacks.

A command books (or cancels, or moves) with the carrier, idempotency key `{return_id}-pickup`
(`-pickup-cancel`, `-pickup-reschedule-{n}`), and is answered with PickupScheduled /
PickupCancelled / PickupRescheduled with event ids derived from the command, so
a retried command yields the same event; a command seen before re-emits its stored answer
without calling the carrier (a replayed topic books nothing; the carrier's idempotency key
is the second net). A callback becomes PickupAttemptFailed / PickupRescheduled (the carrier
proposing a window) / PickupCompleted.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from services.decisions.saga.state import NOT_CANCELLED_PREFIX
from services.eventing.answered_commands import answer_once, answers_fold
from services.eventing.envelope import reply_record
from services.eventing.handler_contract import HttpAnswer, HttpRequest, Incoming, Outbound, Publish
from services.eventing.log_setup import get_logger
from services.eventing.signed_webhooks import publish_signed_event
from services.eventing.webhook_signature import CARRIER_SIGNATURE
from services.pickup.callback_parsing import callback_event
from services.pickup.carrier_client import Booking, DropOff, Rescheduled

SERVICE = "pickup"
log = get_logger(__name__)


class Carrier(Protocol):
    async def book(
        self, key: str, return_id: str, buyer_id: str, address: str, parcel_count: int
    ) -> Booking: ...

    async def cancel(self, key: str, booking_id: str) -> str: ...

    async def reschedule(
        self, key: str, booking_id: str, window_start: int, window_end: int
    ) -> Rescheduled: ...

    async def drop_off(self, key: str, booking_id: str, point_id: str) -> DropOff: ...


@dataclass
class PickupPorts:
    answered: MutableMapping[str, Any]  # return_id -> {command event id: [name, record]}
    carrier: Carrier
    signing_secret: bytes
    publish: Publish
    clock_s: Callable[[], int]


def reply(command: dict[str, Any], name: str, body: dict[str, Any]) -> Outbound:
    return name, reply_record(command, name, body, SERVICE)


# what a command is answered with (stored): the view of them is folded from pickup.events
ANSWERS = frozenset({"PickupScheduled", "PickupCancelled", "PickupRescheduled", "DropOffBooked"})
fold_answers = answers_fold(ANSWERS)


async def handle_pickup_command(ports: PickupPorts, incoming: Incoming) -> list[Outbound]:
    return await answer_once(ports.answered, incoming, lambda: ask_carrier(ports, incoming))


async def ask_carrier(ports: PickupPorts, incoming: Incoming) -> list[Outbound]:
    command = incoming.record
    if incoming.name == "PickupRequested":
        booking = await ports.carrier.book(
            command["idempotency_key"],
            incoming.return_id,
            command["buyer_id"],
            command["pickup_address"],
            command["parcel_count"],
        )
        log.debug("pickup booked", booking_id=booking.booking_id)
        booked = {
            "carrier": booking.carrier,
            "booking_id": booking.booking_id,
            "tracking_number": booking.tracking_number,
            "window_start": booking.window_start,
            "window_end": booking.window_end,
        }
        return [reply(command, "PickupScheduled", booked)]
    if incoming.name == "PickupCancelRequested":
        booking_id = command.get("booking_id")
        outcome = "cancelled"
        if booking_id:
            outcome = await ports.carrier.cancel(command["idempotency_key"], booking_id)
        log.debug("pickup cancel answered", booking_id=booking_id, outcome=outcome)
        reason = command["reason"]
        if outcome == "already_collected":
            reason = f"{NOT_CANCELLED_PREFIX}: the carrier had already collected the parcel"
        return [reply(command, "PickupCancelled", {"booking_id": booking_id, "reason": reason})]
    if incoming.name == "PickupRescheduleRequested":
        moved = await ports.carrier.reschedule(
            command["idempotency_key"],
            command["booking_id"],
            command["window_start"],
            command["window_end"],
        )
        log.debug("pickup reschedule answered", moved=moved.moved)
        answer = {
            "booking_id": command["booking_id"],
            "outcome": "rescheduled" if moved.moved else "refused",
            "proposed_by": "buyer",
            "reschedule_no": command["reschedule_no"],
            "window_start": moved.window_start,
            "window_end": moved.window_end,
            "detail": moved.detail,
        }
        return [reply(command, "PickupRescheduled", answer)]
    if incoming.name == "DropOffRequested":
        dropped = await ports.carrier.drop_off(
            command["idempotency_key"], command["booking_id"], command["point_id"]
        )
        booked = {
            "booking_id": command["booking_id"],
            "outcome": "booked" if dropped.booked else "refused",
            "point_id": command["point_id"],
            "drop_off_code": dropped.code,
            "detail": dropped.detail,
        }
        return [reply(command, "DropOffBooked", booked)]
    return []


async def carrier_unreachable(
    ports: PickupPorts, incoming: Incoming, error: Exception
) -> list[Outbound]:
    """A booking whose carrier calls outlived their retries: a retryable attempt failure the
    saga retries later (an unconfirmed cancellation is retried by the saga's timer); a
    reschedule: refused (the pickup stays in its window)."""
    if incoming.name == "PickupRescheduleRequested":  # the buyer hears it did not move
        command = incoming.record
        unmoved = {
            "booking_id": command["booking_id"],
            "outcome": "refused",
            "proposed_by": "buyer",
            "reschedule_no": command["reschedule_no"],
            "window_start": None,
            "window_end": None,
            "detail": f"carrier unreachable: {str(error)[:200]}",
        }
        return [reply(command, "PickupRescheduled", unmoved)]
    if incoming.name == "DropOffRequested":
        command = incoming.record
        refused = {
            "booking_id": command["booking_id"],
            "outcome": "refused",
            "point_id": command["point_id"],
            "drop_off_code": "",
            "detail": f"carrier unreachable: {str(error)[:200]}",
        }
        return [reply(command, "DropOffBooked", refused)]
    if incoming.name != "PickupRequested":
        return []
    failed = {
        "booking_id": "",
        "attempt_no": incoming.envelope["attempt"],
        "failure_reason": "CARRIER_ERROR",
        "detail": str(error)[:200],
        "retryable": True,
    }
    return [reply(incoming.record, "PickupAttemptFailed", failed)]


async def carrier_callback(ports: PickupPorts, request: HttpRequest) -> HttpAnswer:
    """POST /carrier/callbacks: a signed status callback becomes one pickup event."""
    return await publish_signed_event(
        request,
        signature=CARRIER_SIGNATURE,
        secret=ports.signing_secret,
        now_s=ports.clock_s(),
        event_of=lambda body: callback_event(body, SERVICE),
        publish=ports.publish,
        logged_as="carrier callback",
    )
