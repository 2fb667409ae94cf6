"""Composition root of the inspection service (the scanners' HTTP API).

POST /inspections: authenticate the station (401/403), validate (400/422), then
- a scan_id seen before answers its first answer again and emits nothing;
- an unknown return is 404; a return not awaiting inspection is 409 with its state;
- otherwise InspectionRecorded is emitted (event id derived from the scan_id) and 202.
What the service knows about returns comes from the event stream (`returns` table).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

from services.eventing.avro_codec import Decoded
from services.eventing.envelope import new_envelope, now_ms
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
from services.eventing.topics import INSPECTION_EVENTS, PICKUP_EVENTS, RETURNS_EVENTS, SAGA_EVENTS
from services.inspection import return_tracking
from services.inspection.scan_request import parse_scan
from services.inspection.station_auth import authenticate, authorize_station, parse_station_tokens

SERVICE = "inspection"
DEFAULT_PORT = 8083
DEV_TOKENS = "ST-1:dev-station-token-0001,ST-2:dev-station-token-0002"
SCAN_NAMESPACE = uuid.UUID("0d6c2a0e-9b7e-5f7c-a3c1-7f5e2b9d4a11")
log = get_logger(__name__)


def scan_event_id(scan_id: str) -> str:
    return str(uuid.uuid5(SCAN_NAMESPACE, scan_id))


def build(settings: ServiceSettings, station_tokens: dict[str, str]) -> ServiceParts:
    parts = build_parts(settings)
    app = parts.app
    returns = json_table(app, "returns")  # return_id -> view (return_tracking)
    scans = json_table(app, "scans")  # scan_id -> first answer
    recent_scans: OrderedDict[str, dict[str, Any]] = OrderedDict()  # answered, not yet in table
    submitted: dict[str, str] = {}  # return_id -> scan_id posted by this process
    lock = asyncio.Lock()

    async def follow(decoded: Decoded, message: Any) -> list[Outbound]:
        record, return_id = decoded.record, decoded.record["envelope"]["return_id"]
        view = return_tracking.track(returns.get(return_id), decoded.name, record)
        if view is not None:
            returns[return_id] = view
        if decoded.name == "InspectionRecorded" and scans.get(record["scan_id"]) is None:
            scans[record["scan_id"]] = {
                "status": 202,
                "body": {
                    "scan_id": record["scan_id"],
                    "return_id": return_id,
                    "event_id": record["envelope"]["event_id"],
                    "status": "recorded",
                },
            }
        return []

    @app.agent(
        raw_topic(
            app, RETURNS_EVENTS.name, PICKUP_EVENTS.name, INSPECTION_EVENTS.name, SAGA_EVENTS.name
        ),
        name="returns-view",
        concurrency=1,
    )
    async def follow_returns(stream: Any) -> None:
        await parts.consumer.run(stream, follow, accepts=set(return_tracking.TRACKED_EVENTS))

    @json_endpoint
    async def post_inspection(web: Any, request: Any) -> Any:
        station = authenticate(station_tokens, request.headers.get("Authorization"))
        scan = parse_scan(parse_json_object(await request.read()))
        authorize_station(station, scan.station_id)
        async with lock:
            with event_context(return_id=scan.return_id, scan_id=scan.scan_id):
                first = recent_scans.get(scan.scan_id) or scans.get(scan.scan_id)
                if first is not None:
                    log.info("duplicate scan: first answer returned")
                    return web.json(
                        first["body"],
                        status=first["status"],
                        headers={"Idempotent-Replayed": "true"},
                    )
                view = returns.get(scan.return_id)
                if view is None:
                    raise ApiError(404, "unknown_return", f"no return {scan.return_id} is known")
                state = view["state"]
                if submitted.get(scan.return_id) or state != return_tracking.AWAITING_INSPECTION:
                    current = return_tracking.INSPECTED if submitted.get(scan.return_id) else state
                    raise ApiError(
                        409,
                        "not_awaiting_inspection",
                        f"return {scan.return_id} is {current}",
                        extra={"return_id": scan.return_id, "state": current},
                    )
                event_id = scan_event_id(scan.scan_id)
                record = {
                    "envelope": new_envelope(
                        "InspectionRecorded",
                        scan.return_id,
                        SERVICE,
                        event_id=event_id,
                        correlation_id=view.get("correlation_id") or event_id,
                    ),
                    **scan.event_fields(now_ms()),
                }
                await parts.publisher.publish([("InspectionRecorded", record)])
                body = {
                    "scan_id": scan.scan_id,
                    "return_id": scan.return_id,
                    "event_id": event_id,
                    "status": "recorded",
                }
                recent_scans[scan.scan_id] = {"status": 202, "body": body}
                while len(recent_scans) > 10_000:
                    recent_scans.popitem(last=False)
                submitted[scan.return_id] = scan.scan_id
                log.info("inspection recorded", items=len(scan.items), event_id=event_id)
                return web.json(body, status=202)

    post_page(app, "/inspections", post_inspection)
    add_health_page(app, SERVICE)
    add_openapi_page(app, Path(__file__).with_name("openapi.json"))
    return parts


def main() -> int:
    settings = ServiceSettings.from_env(SERVICE, DEFAULT_PORT)
    raw_tokens = os.environ.get("INSPECTION_STATION_TOKENS")
    if raw_tokens is None:
        log.warning("INSPECTION_STATION_TOKENS is not set: using development tokens")
        raw_tokens = DEV_TOKENS
    return run_worker(build(settings, parse_station_tokens(raw_tokens)).app, SERVICE)
