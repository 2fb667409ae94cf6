"""The pickup service's handlers with a fake carrier (no broker, no HTTP)."""

from __future__ import annotations

import asyncio
import json

import pytest

from services.eventing.handler_contract import HttpRequest, Incoming, TransientFailure
from services.eventing.request_fields import ApiError
from services.pickup import handlers
from services.pickup.handlers import PickupPorts
from tests.support.fake_partners import FakeCarrier, Published
from tests.support.in_memory_loop import CARRIER_SECRET, signed_carrier_callback
from tests.support.return_events import envelope

NOW_S = 1_790_000_000
RID = "RMA-PICKUP-1"


def ports(carrier: FakeCarrier | None = None) -> PickupPorts:
    return PickupPorts({}, carrier or FakeCarrier(), CARRIER_SECRET, Published(), lambda: NOW_S)


def pickup_requested(attempt: int = 1) -> Incoming:
    record = {
        "envelope": envelope("PickupRequested", RID, "coordinator", attempt=attempt),
        "idempotency_key": f"{RID}-pickup",
        "buyer_id": "B-1",
        "pickup_address": "Musterstrasse 1, Berlin",
        "parcel_count": 1,
    }
    return Incoming("PickupRequested", record, RID.encode())


def cancel_requested(booking_id: str | None = "BK-1") -> Incoming:
    record = {
        "envelope": envelope("PickupCancelRequested", RID, "coordinator"),
        "idempotency_key": f"{RID}-cancel-pickup",
        "booking_id": booking_id,
        "reason": "cancelled by the buyer",
    }
    return Incoming("PickupCancelRequested", record, RID.encode())


def test_a_pickup_request_books_with_the_carrier_and_answers_pickup_scheduled():
    wired, command = ports(), pickup_requested()
    [(name, record)] = asyncio.run(handlers.handle_pickup_command(wired, command))
    assert name == "PickupScheduled"
    assert record["envelope"]["causation_id"] == command.event_id
    assert (record["booking_id"], record["carrier"]) == ("BK-1", "fake-express")
    assert wired.carrier.calls == [("book", f"{RID}-pickup")]


def test_a_redelivered_command_re_emits_its_stored_answer_without_calling_the_carrier():
    wired, command = ports(), pickup_requested()
    first = asyncio.run(handlers.handle_pickup_command(wired, command))
    again = asyncio.run(handlers.handle_pickup_command(wired, command))
    assert again == first
    assert len(wired.carrier.calls) == 1


def test_a_cancel_the_courier_beat_says_the_parcel_was_not_cancelled():
    wired = ports(FakeCarrier(cancel_outcome="already_collected"))
    [(name, record)] = asyncio.run(handlers.handle_pickup_command(wired, cancel_requested()))
    assert name == "PickupCancelled"
    assert record["reason"].startswith("not-cancelled")


def test_a_cancel_before_any_booking_is_cancelled_without_asking_the_carrier():
    wired = ports()
    [(name, _)] = asyncio.run(handlers.handle_pickup_command(wired, cancel_requested(None)))
    assert name == "PickupCancelled"
    assert wired.carrier.calls == []


def test_a_carrier_that_stays_down_is_a_transient_failure_then_a_retryable_attempt_failure():
    wired = ports(FakeCarrier(down=True))
    with pytest.raises(TransientFailure):
        asyncio.run(handlers.handle_pickup_command(wired, pickup_requested()))
    assert wired.answered == {}  # nothing stored: the command is answered later
    error = TransientFailure("carrier down")
    [(name, record)] = asyncio.run(
        handlers.carrier_unreachable(wired, pickup_requested(attempt=2), error)
    )
    assert (name, record["retryable"], record["attempt_no"]) == ("PickupAttemptFailed", True, 2)
    assert asyncio.run(handlers.carrier_unreachable(wired, cancel_requested(), error)) == []


def callback(**overrides: object) -> bytes:
    body = {
        "callback_id": "CB-1",
        "return_id": RID,
        "booking_id": "BK-1",
        "tracking_number": "TRK-1",
        "status": "collected",
        "occurred_at": NOW_S * 1000,
        "attempt_no": 1,
    }
    return json.dumps(body | overrides).encode()


def test_a_signed_callback_is_published_as_one_pickup_event_and_answered_202():
    wired, body = ports(), callback()
    answer = asyncio.run(
        handlers.carrier_callback(wired, HttpRequest(body, signed_carrier_callback(body, NOW_S)))
    )
    assert answer.status == 202
    assert wired.publish.names() == ["PickupCompleted"]
    assert answer.body["event_id"] == wired.publish.records[0][1]["envelope"]["event_id"]


def test_an_unsigned_stale_or_invalid_callback_is_refused_and_publishes_nothing():
    wired, body = ports(), callback()
    stale = signed_carrier_callback(body, NOW_S - 3600)
    bad = callback(status="lost")
    refusals = []
    for request in (
        HttpRequest(body, {}),
        HttpRequest(body, stale),
        HttpRequest(bad, signed_carrier_callback(bad, NOW_S)),
    ):
        with pytest.raises(ApiError) as refused:
            asyncio.run(handlers.carrier_callback(wired, request))
        refusals.append((refused.value.status, refused.value.code))
    assert refusals == [(401, "bad_signature"), (401, "bad_signature"), (422, "invalid_request")]
    assert wired.publish.records == []
