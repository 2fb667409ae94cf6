"""What a warehouse scanner POSTs to the inspection service (`POST /inspections`)."""

from __future__ import annotations

import random
from typing import Any

from services.tools.local_stack.drawn_returns import TrackedReturn
from services.tools.local_stack.stack import STATION_TOKENS


def scanned_item(
    sku: str, grade: str, measured_weight_grams: int, packaging_damaged: bool | None = None
) -> dict[str, Any]:
    """One scanned unit, matching the order; `packaging_damaged` is left out when None."""
    item: dict[str, Any] = {
        "sku": sku,
        "serial": None,
        "grade": grade,
        "matches_order": True,
        "measured_weight_grams": measured_weight_grams,
        "expected_weight_grams": None,
        "notes": "",
        "photo_refs": [],
    }
    if packaging_damaged is not None:
        item["packaging_damaged"] = packaging_damaged
    return item


def scan_request(
    scan_id: str, return_id: str, station_id: str, inspector_id: str, items: list[dict[str, Any]]
) -> dict[str, Any]:
    """The body of `POST /inspections`."""
    return {
        "scan_id": scan_id,
        "return_id": return_id,
        "station_id": station_id,
        "inspector_id": inspector_id,
        "items": items,
    }


def scan_body(tracked: TrackedReturn, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """A station's scan of every returned unit with the grades drawn for it: (station, body)."""
    station = rng.choice(sorted(STATION_TOKENS))
    units = [line["sku"] for line in tracked.body["lines"] for _ in range(line["quantity"])]
    items = [
        scanned_item(sku, grade, rng.randint(300, 900), tracked.packaging_damaged)
        | tracked.item_changes
        for sku, grade in zip(units, tracked.grades, strict=True)
    ]
    inspector = f"I-{rng.randint(1, 12)}"
    return station, scan_request(
        f"SCAN-{tracked.idempotency_key}", tracked.return_id, station, inspector, items
    )


def rescan_body(tracked: TrackedReturn, excluded_station: str) -> tuple[str, dict[str, Any]]:
    """A disputed return inspected again at another station, which finds no damage
    (grade B for every unit): (station, body)."""
    station = next(s for s in sorted(STATION_TOKENS) if s != excluded_station)
    units = [line["sku"] for line in tracked.body["lines"] for _ in range(line["quantity"])]
    items = [scanned_item(sku, "B", 500, tracked.packaging_damaged) for sku in units]
    return station, scan_request(
        f"SCAN-{tracked.idempotency_key}-R2", tracked.return_id, station, "I-dispute", items
    )
