"""The inspection service's handlers: the scanners' POST /inspections and the view of
returns it keeps from the event stream (`returns` table).

POST /inspections: authenticate the station (401/403), validate (400/422), then
- a scan_id seen before answers its first answer again and emits nothing;
- an unknown return is 404; a return not awaiting inspection is 409 with its state; a
  disputed return's re-inspection at the station that inspected it first is 409
  `same_station`;
- otherwise InspectionRecorded is emitted (event id derived from the scan_id) and 202.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from services.decisions.folded_events import unfolded
from services.eventing.envelope import new_envelope
from services.eventing.handler_contract import HttpAnswer, HttpRequest, Incoming, Outbound, Publish
from services.eventing.keyed_locks import KeyedLocks
from services.eventing.log_setup import event_context, get_logger
from services.eventing.request_fields import ApiError, parse_json_object
from services.inspection import return_tracking
from services.inspection.scan_request import parse_scan
from services.inspection.station_auth import authenticate, authorize_station

SERVICE = "inspection"
SCAN_NAMESPACE = uuid.UUID("0d6c2a0e-9b7e-5f7c-a3c1-7f5e2b9d4a11")
RECENT_SCANS = 10_000
log = get_logger(__name__)


def scan_event_id(scan_id: str) -> str:
    return str(uuid.uuid5(SCAN_NAMESPACE, scan_id))


@dataclass
class InspectionPorts:
    returns: MutableMapping[str, Any]  # return_id -> view (return_tracking)
    scans: MutableMapping[str, Any]  # scan_id -> first answer
    station_tokens: dict[str, str]
    publish: Publish
    clock_ms: Callable[[], int]
    # answered by this process, not yet in the table (the table learns them from the topic)
    recent_scans: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    # "{return_id}#{round}" -> scan_id posted here (the newest RECENT_SCANS: the view knows
    # older ones)
    submitted: OrderedDict[str, str] = field(default_factory=OrderedDict)
    # a scan waits for another of the same scan_id or return (check, then publish), not for
    # every scan: one lock for all held each scan's publish (~7 ms) and capped the service
    # at ~130 scans/s
    locks: KeyedLocks = field(default_factory=KeyedLocks)


async def follow_returns(ports: InspectionPorts, incoming: Incoming) -> list[Outbound]:
    """Keep the view of each return (is it awaiting inspection?) and each recorded scan's
    answer, so a scan posted again after a restart gets its first answer."""
    fold_return(ports.returns, incoming.name, incoming.record)
    fold_scan(ports.scans, incoming.name, incoming.record)
    return []


def fold_return(returns: MutableMapping[str, Any], name: str, record: dict[str, Any]) -> None:
    """The `returns` view (folded from the followed topics): is each awaiting inspection?"""
    for event_name, event in unfolded(name, record):
        return_id = event["envelope"]["return_id"]
        view = return_tracking.track(returns.get(return_id), event_name, event)
        if view is not None:
            returns[return_id] = view


def fold_scan(scans: MutableMapping[str, Any], name: str, record: dict[str, Any]) -> None:
    """The `scans` view (folded from inspection.events): each scan's first answer."""
    if name == "InspectionRecorded" and scans.get(record["scan_id"]) is None:
        envelope = record["envelope"]
        scans[record["scan_id"]] = {
            "status": 202,
            "body": scan_answer(record["scan_id"], envelope["return_id"], envelope["event_id"]),
        }


def scan_answer(scan_id: str, return_id: str, event_id: str) -> dict[str, Any]:
    return {"scan_id": scan_id, "return_id": return_id, "event_id": event_id, "status": "recorded"}


async def post_inspection(ports: InspectionPorts, request: HttpRequest) -> HttpAnswer:
    station = authenticate(ports.station_tokens, request.headers.get("Authorization"))
    scan = parse_scan(parse_json_object(request.body))
    authorize_station(station, scan.station_id)
    async with ports.locks.holding(f"scan:{scan.scan_id}", f"return:{scan.return_id}"):
        with event_context(return_id=scan.return_id, scan_id=scan.scan_id):
            first = ports.recent_scans.get(scan.scan_id) or ports.scans.get(scan.scan_id)
            if first is not None:
                log.debug("duplicate scan: first answer returned")
                return HttpAnswer(first["status"], first["body"], {"Idempotent-Replayed": "true"})
            view = ports.returns.get(scan.return_id)
            if view is None:
                raise ApiError(404, "unknown_return", f"no return {scan.return_id} is known")
            state = view["state"]
            # one scan per return and round (a re-inspection is round 2)
            submitted_key = f"{scan.return_id}#{view.get('round', 1)}"
            if ports.submitted.get(submitted_key) or state not in return_tracking.AWAITING:
                current = return_tracking.INSPECTED if ports.submitted.get(submitted_key) else state
                raise ApiError(
                    409,
                    "not_awaiting_inspection",
                    f"return {scan.return_id} is {current}",
                    extra={"return_id": scan.return_id, "state": current},
                )
            excluded = view.get("excluded_station_id")
            if state == return_tracking.REINSPECTION and scan.station_id == excluded:
                raise ApiError(
                    409,
                    "same_station",
                    f"return {scan.return_id} is disputed: it is inspected again at a station "
                    f"other than {excluded}, which inspected it first",
                    extra={"return_id": scan.return_id, "state": state},
                )
            event_id = scan_event_id(scan.scan_id)
            now = ports.clock_ms()
            record = {
                "envelope": new_envelope(
                    "InspectionRecorded",
                    scan.return_id,
                    SERVICE,
                    event_id=event_id,
                    correlation_id=view.get("correlation_id") or event_id,
                    occurred_at=now,
                ),
                **scan.event_fields(now),
            }
            await ports.publish([("InspectionRecorded", record)])
            body = scan_answer(scan.scan_id, scan.return_id, event_id)
            ports.recent_scans[scan.scan_id] = {"status": 202, "body": body}
            while len(ports.recent_scans) > RECENT_SCANS:
                ports.recent_scans.popitem(last=False)
            ports.submitted[submitted_key] = scan.scan_id
            while len(ports.submitted) > RECENT_SCANS:
                ports.submitted.popitem(last=False)
            log.debug("inspection recorded", items=len(scan.items), event_id=event_id)
            return HttpAnswer(202, body)
