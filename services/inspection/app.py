"""Composition root of the inspection service (the scanners' HTTP API): the `returns` and
`scans` tables and the station tokens wired to the handlers (services/inspection/handlers.py):
one consumer following the return events and the POST /inspections route."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from services.engine import worker as runtime
from services.engine.state_store import TopicView
from services.eventing.envelope import now_ms
from services.eventing.handler_contract import Route, Subscription, Wiring
from services.eventing.log_setup import get_logger
from services.eventing.request_keys import body_field
from services.eventing.topics import INSPECTION_EVENTS, PICKUP_EVENTS, RETURNS_EVENTS, SAGA_EVENTS
from services.inspection import handlers, return_tracking
from services.inspection.handlers import SERVICE, InspectionPorts
from services.inspection.station_auth import parse_station_tokens

DEFAULT_PORT = 8083
DEV_TOKENS = "ST-1:dev-station-token-0001,ST-2:dev-station-token-0002"
FOLLOWED = (RETURNS_EVENTS, PICKUP_EVENTS, INSPECTION_EVENTS, SAGA_EVENTS)
FOLLOWED_NAMES = tuple(topic.name for topic in FOLLOWED)
log = get_logger(__name__)


def wiring(ports: InspectionPorts) -> Wiring:
    view = Subscription(
        "returns-view",
        FOLLOWED_NAMES,
        partial(handlers.follow_returns, ports),
        accepts=return_tracking.TRACKED_EVENTS,
    )
    # answered by the instance owning the return's partition (its `returns` view)
    scans = Route(
        "POST",
        "/inspections",
        partial(handlers.post_inspection, ports),
        owner_key=body_field("return_id"),
    )
    return Wiring((view,), (scans,))


def build(
    settings: runtime.ServiceSettings, station_tokens: dict[str, str]
) -> runtime.ServiceParts:
    def wire(parts: runtime.ServiceParts) -> Wiring:
        return wiring(
            InspectionPorts(
                returns=parts.view("returns", TopicView(FOLLOWED_NAMES, handlers.fold_return)),
                scans=parts.view("scans", TopicView((INSPECTION_EVENTS.name,), handlers.fold_scan)),
                station_tokens=station_tokens,
                publish=parts.publish,
                clock_ms=now_ms,
            )
        )

    return runtime.build_service(settings, wire, Path(__file__).with_name("openapi.json"))


def main() -> int:
    raw_tokens = os.environ.get("INSPECTION_STATION_TOKENS")
    if raw_tokens is None:
        log.warning("INSPECTION_STATION_TOKENS is not set: using development tokens")
        raw_tokens = DEV_TOKENS
    tokens = parse_station_tokens(raw_tokens)
    return runtime.run_service(SERVICE, DEFAULT_PORT, lambda settings: build(settings, tokens))
