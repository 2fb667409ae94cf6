"""The inspection service's handlers over in-memory tables (no broker, no HTTP)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from services.eventing.handler_contract import HttpRequest, Incoming
from services.eventing.request_fields import ApiError
from services.inspection import handlers, return_tracking
from services.inspection.handlers import InspectionPorts
from tests.support.fake_partners import Published
from tests.support.in_memory_loop import STATION, STATION_TOKEN, station_headers
from tests.support.return_events import event
from tests.unit.test_saga_refund_plan import item

RID = "RMA-INSPECT-1"
NOW = 1_790_000_000_000


def ports() -> InspectionPorts:
    return InspectionPorts(
        {}, {}, {STATION: STATION_TOKEN, "ST-2": "x" * 20}, Published(), lambda: NOW
    )


def follow(wired: InspectionPorts, name: str, **fields: Any) -> None:
    record = event(name, RID, **fields)
    asyncio.run(handlers.follow_returns(wired, Incoming(name, record, RID.encode())))


def awaiting_inspection() -> InspectionPorts:
    wired = ports()
    follow(wired, "ReturnRequested")
    follow(wired, "ReturnAccepted")
    follow(wired, "PickupCompleted")
    assert wired.returns[RID]["state"] == return_tracking.AWAITING_INSPECTION
    return wired


def scan(scan_id: str = "SCAN-1", station: str = STATION, return_id: str = RID) -> bytes:
    body = {
        "scan_id": scan_id,
        "return_id": return_id,
        "station_id": station,
        "inspector_id": "I-1",
        "items": [item()],
    }
    return json.dumps(body).encode()


def post(wired: InspectionPorts, body: bytes, headers: dict[str, str] | None = None) -> Any:
    request = HttpRequest(body, station_headers() if headers is None else headers)
    return asyncio.run(handlers.post_inspection(wired, request))


def refused(wired: InspectionPorts, body: bytes, headers: dict[str, str] | None = None) -> Any:
    with pytest.raises(ApiError) as refusal:
        post(wired, body, headers)
    return refusal.value.status, refusal.value.code


def test_a_scan_of_a_return_awaiting_inspection_is_recorded_once_and_answered_202():
    wired = awaiting_inspection()
    answer = post(wired, scan())
    assert (answer.status, answer.body["status"]) == (202, "recorded")
    [(name, record)] = wired.publish.records
    assert name == "InspectionRecorded"
    assert record["envelope"]["event_id"] == handlers.scan_event_id("SCAN-1")
    assert record["inspected_at"] == NOW


def test_the_same_scan_again_gets_its_first_answer_and_publishes_nothing_new():
    wired = awaiting_inspection()
    first = post(wired, scan())
    again = post(wired, scan())
    assert (again.status, again.body) == (first.status, first.body)
    assert again.headers == {"Idempotent-Replayed": "true"}
    assert len(wired.publish.records) == 1


def test_a_scan_recorded_before_a_restart_is_answered_from_the_table_it_rebuilt():
    wired = awaiting_inspection()
    follow(wired, "InspectionRecorded", scan_id="SCAN-9")
    answer = post(wired, scan("SCAN-9"))
    assert (answer.status, answer.headers) == (202, {"Idempotent-Replayed": "true"})
    assert wired.publish.records == []


def test_unknown_returns_returns_not_awaiting_inspection_and_bad_scanners_are_refused():
    wired = awaiting_inspection()
    assert refused(wired, scan(return_id="RMA-NOPE")) == (404, "unknown_return")
    assert refused(wired, scan(), {}) == (401, "unauthenticated")
    assert refused(wired, scan(), station_headers("not-a-token-of-ours")) == (
        401,
        "unauthenticated",
    )
    assert refused(wired, scan(station="ST-2")) == (403, "wrong_station")
    assert refused(wired, b"{not json") == (400, "malformed_json")
    post(wired, scan("SCAN-1"))
    assert refused(wired, scan("SCAN-2")) == (409, "not_awaiting_inspection")
    waiting = ports()
    follow(waiting, "ReturnRequested")
    assert refused(waiting, scan()) == (409, "not_awaiting_inspection")


def test_scans_of_different_returns_do_not_wait_for_each_others_publish_the_same_scan_does():
    """A scan's check and publish hold its scan id and return, not the whole service (one
    lock for every scan capped the service at one publish round trip per scan)."""

    class SlowFirstPublish:
        def __init__(self) -> None:
            self.records: list[Any] = []
            self.release = asyncio.Event()

        async def __call__(self, outbound: Any) -> None:
            if not self.records:
                self.records.extend(outbound)
                await self.release.wait()  # the broker has not acknowledged the first yet
                return
            self.records.extend(outbound)

    async def scenario() -> None:
        wired = ports()
        wired.publish = SlowFirstPublish()
        for return_id in (RID, "RMA-INSPECT-2"):
            for name in ("ReturnRequested", "ReturnAccepted", "PickupCompleted"):
                record = event(name, return_id)
                await handlers.follow_returns(wired, Incoming(name, record, return_id.encode()))

        def request(scan_id: str, return_id: str) -> Any:
            body = scan(scan_id, return_id=return_id)
            return handlers.post_inspection(wired, HttpRequest(body, station_headers()))

        first = asyncio.create_task(request("SCAN-1", RID))
        await asyncio.sleep(0)
        again = asyncio.create_task(request("SCAN-1", RID))  # waits for the first answer
        other = await asyncio.wait_for(request("SCAN-2", "RMA-INSPECT-2"), 1)
        assert other.status == 202 and not first.done() and not again.done()
        wired.publish.release.set()
        assert (await first).status == 202
        replayed = await again
        assert (replayed.status, replayed.headers) == (202, {"Idempotent-Replayed": "true"})
        assert len(wired.publish.records) == 2 and len(wired.locks) == 0

    asyncio.run(scenario())


def test_a_disputed_return_is_inspected_again_once_and_never_at_the_first_station():
    wired = awaiting_inspection()
    assert post(wired, scan("SCAN-1")).status == 202
    follow(wired, "InspectionRecorded", scan_id="SCAN-1", station_id=STATION)
    follow(wired, "ReturnFailed")
    assert refused(wired, scan("SCAN-2")) == (409, "not_awaiting_inspection")
    follow(
        wired,
        "ReinspectionRequested",
        excluded_station_id=STATION,
        first_scan_id="SCAN-1",
        round=2,
    )
    # the first scan, read again while the view is rebuilt, does not close the round
    follow(wired, "InspectionRecorded", scan_id="SCAN-1", station_id=STATION)
    assert wired.returns[RID]["state"] == return_tracking.REINSPECTION
    assert refused(wired, scan("SCAN-2")) == (409, "same_station")
    second_station = {"Authorization": "Bearer " + "x" * 20}
    answer = post(wired, scan("SCAN-3", station="ST-2"), second_station)
    assert answer.status == 202
    assert refused(wired, scan("SCAN-4", station="ST-2"), second_station) == (
        409,
        "not_awaiting_inspection",
    )
    follow(wired, "DisputeDecided")
    assert wired.returns[RID]["state"] == return_tracking.CLOSED
