"""Which returns await inspection, learned from the event stream (pure).

The inspection service never asks another service: it follows the returns, pickup,
inspection and saga topics and keeps, per return, a small view of where it stands. A
disputed return is to be inspected again (ReinspectionRequested, round 2) at a station
other than the first; its decision (DisputeDecided) closes it again.
"""

from __future__ import annotations

from typing import Any

AWAITING_PICKUP = "AWAITING_PICKUP"
AWAITING_INSPECTION = "AWAITING_INSPECTION"
INSPECTED = "INSPECTED"
REQUESTED = "REQUESTED"
CLOSED = "CLOSED"
REINSPECTION = "REINSPECTION"  # disputed: to be inspected again, at another station

TRACKED_EVENTS = frozenset(
    {
        "ReturnRequested",
        "ReturnAccepted",
        "ReturnRejected",
        "ReturnCancelled",
        "PickupCompleted",
        "InspectionRecorded",
        "ReturnCompleted",
        "ReturnFailed",
        "ReinspectionRequested",
        "DisputeDecided",
    }
)
AWAITING = frozenset({AWAITING_INSPECTION, REINSPECTION})
CLOSING = ("ReturnRejected", "ReturnCancelled", "ReturnCompleted", "ReturnFailed", "DisputeDecided")


def track(view: dict[str, Any] | None, name: str, record: dict[str, Any]) -> dict[str, Any] | None:
    """The return's view after `name`; None when the event tells us nothing new."""
    envelope = record["envelope"]
    view = dict(view or {"state": REQUESTED, "correlation_id": envelope["correlation_id"]})
    state = view["state"]
    if name == "ReturnRequested":
        view["skus"] = sorted({line["sku"] for line in record["lines"]})
        return view
    if name == "ReturnAccepted" and state == REQUESTED:
        return {**view, "state": AWAITING_PICKUP}
    if name == "PickupCompleted" and state in (REQUESTED, AWAITING_PICKUP):
        return {**view, "state": AWAITING_INSPECTION}
    if name == "ReinspectionRequested":
        return {
            **view,
            "state": REINSPECTION,
            "round": record["round"],
            "excluded_station_id": record["excluded_station_id"],
            "first_scan_id": record["first_scan_id"],
        }
    if name == "InspectionRecorded" and state == REINSPECTION:
        if record["scan_id"] == view.get("first_scan_id"):
            return None  # the first inspection, read after the re-inspection was asked
        return {**view, "state": INSPECTED, "scan_id": record["scan_id"]}
    if name == "InspectionRecorded" and state != CLOSED:
        return {**view, "state": INSPECTED, "scan_id": record["scan_id"]}
    if name in CLOSING:
        return {**view, "state": CLOSED, "closed_by": name}
    return None
