"""An inspection scan as posted by a warehouse scanner: validated and normalised (pure).

{"scan_id": "SCAN-1", "return_id": "RMA-…", "station_id": "ST-1", "inspector_id": "I-7",
 "items": [{"sku": "TS-M", "serial": null, "grade": "A", "matches_order": true,
            "measured_weight_grams": 410, "expected_weight_grams": 420,
            "notes": "", "photo_refs": ["s3://…/1.jpg"], "packaging_damaged": false}]}

`packaging_damaged` (optional, default false): the outer packaging arrived damaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.eventing.request_fields import Fields, invalid

GRADES = frozenset({"A", "B", "C", "D"})
MAX_ITEMS = 100


@dataclass(frozen=True)
class ScanRequest:
    scan_id: str
    return_id: str
    station_id: str
    inspector_id: str
    items: tuple[dict[str, Any], ...]

    def event_fields(self, inspected_at: int) -> dict[str, Any]:
        return {
            "scan_id": self.scan_id,
            "station_id": self.station_id,
            "inspector_id": self.inspector_id,
            "items": list(self.items),
            "inspected_at": inspected_at,
        }


def _optional_flag(item: Fields, raw: dict[str, Any], key: str) -> bool:
    if key not in raw:
        return False
    return bool(item.boolean(key))


def parse_scan(data: dict[str, Any]) -> ScanRequest:
    fields = Fields(data)
    scan_id = fields.text("scan_id", max_len=64)
    return_id = fields.text("return_id", max_len=64)
    station_id = fields.text("station_id", max_len=64)
    inspector_id = fields.text("inspector_id", max_len=64)
    items = []
    for index, raw in enumerate(fields.objects("items", max_items=MAX_ITEMS)):
        item = fields.nested(f"items[{index}]", raw)
        expected = item.integer("expected_weight_grams", minimum=0, maximum=10**7, required=False)
        items.append(
            {
                "sku": item.text("sku", max_len=64),
                "serial": item.text("serial", required=False, max_len=128) or None,
                "grade": item.choice("grade", GRADES),
                "matches_order": item.boolean("matches_order"),
                "measured_weight_grams": item.integer(
                    "measured_weight_grams", minimum=0, maximum=10**7
                ),
                "expected_weight_grams": expected,
                "notes": item.text("notes", required=False, max_len=2000),
                "photo_refs": item.string_list("photo_refs"),
                "packaging_damaged": _optional_flag(item, raw, "packaging_damaged"),
            }
        )
    if fields.problems:
        raise invalid(fields.problems)
    return ScanRequest(scan_id, return_id, station_id, inspector_id, tuple(items))
