"""The inspection service's view of each return: every tracked event from every state."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from services.inspection.return_tracking import (
    AWAITING_INSPECTION,
    AWAITING_PICKUP,
    CLOSED,
    INSPECTED,
    REINSPECTION,
    REQUESTED,
    TRACKED_EVENTS,
    track,
)
from tests.support.return_events import envelope, event

RID = "RMA-TRACK-1"
STATES = [REQUESTED, AWAITING_PICKUP, AWAITING_INSPECTION, INSPECTED, CLOSED, REINSPECTION]
CLOSING = ["ReturnRejected", "ReturnCancelled", "ReturnCompleted", "ReturnFailed", "DisputeDecided"]
SAGA_EVENTS = {"ReturnCompleted", "ReturnFailed"}  # not built by tests.support.return_events

# The state after (state, event); None: the view is not changed.
EXPECTED: dict[tuple[str, str], str | None] = {
    # ReturnRequested keeps the state (it only records the skus)
    **{(state, "ReturnRequested"): state for state in STATES},
    (REQUESTED, "ReturnAccepted"): AWAITING_PICKUP,
    (AWAITING_PICKUP, "ReturnAccepted"): None,
    (AWAITING_INSPECTION, "ReturnAccepted"): None,
    (INSPECTED, "ReturnAccepted"): None,
    (CLOSED, "ReturnAccepted"): None,
    (REQUESTED, "PickupCompleted"): AWAITING_INSPECTION,
    (AWAITING_PICKUP, "PickupCompleted"): AWAITING_INSPECTION,
    (AWAITING_INSPECTION, "PickupCompleted"): None,
    (INSPECTED, "PickupCompleted"): None,
    (CLOSED, "PickupCompleted"): None,
    (REQUESTED, "InspectionRecorded"): INSPECTED,
    (AWAITING_PICKUP, "InspectionRecorded"): INSPECTED,
    (AWAITING_INSPECTION, "InspectionRecorded"): INSPECTED,
    (INSPECTED, "InspectionRecorded"): INSPECTED,
    (CLOSED, "InspectionRecorded"): None,
    **{(state, name): CLOSED for state in STATES for name in CLOSING},
    # a disputed return is inspected again (another station), then closed by its decision
    **{(state, "ReinspectionRequested"): REINSPECTION for state in STATES},
    (REINSPECTION, "ReturnAccepted"): None,
    (REINSPECTION, "PickupCompleted"): None,
    (REINSPECTION, "InspectionRecorded"): INSPECTED,
}


def record(name: str, **fields: Any) -> dict[str, Any]:
    if name in SAGA_EVENTS:  # tracking reads only their envelope
        return {"envelope": envelope(name, RID), **fields}
    return event(name, RID, **fields)


def view_in(state: str) -> dict[str, Any]:
    return {"state": state, "correlation_id": "corr-1", "skus": ["SKU-CAP", "SKU-RED-M"]}


def test_tracked_events_are_the_ones_the_table_covers() -> None:
    assert {name for _, name in EXPECTED} == TRACKED_EVENTS


def test_table_covers_every_state_and_event() -> None:
    assert set(EXPECTED) == set(itertools.product(STATES, TRACKED_EVENTS))


@pytest.mark.parametrize(("state", "name"), sorted(EXPECTED))
def test_every_event_from_every_state(state: str, name: str) -> None:
    before = view_in(state)
    after = track(before, name, record(name))
    expected = EXPECTED[(state, name)]
    if expected is None:
        assert after is None
    else:
        assert after is not None
        assert after["state"] == expected
        assert after["correlation_id"] == "corr-1"
    assert before == view_in(state)  # the given view is never modified


def test_return_requested_on_an_unknown_return_starts_the_view() -> None:
    requested = record("ReturnRequested")
    view = track(None, "ReturnRequested", requested)
    assert view == {
        "state": REQUESTED,
        "correlation_id": requested["envelope"]["correlation_id"],
        "skus": ["SKU-CAP", "SKU-RED-M"],
    }


def test_return_requested_records_distinct_sorted_skus() -> None:
    lines = [
        {**line, "sku": sku}
        for line, sku in zip(
            record("ReturnRequested")["lines"] * 2, ["Z", "A", "Z", "M"], strict=False
        )
    ]
    view = track(None, "ReturnRequested", record("ReturnRequested", lines=lines))
    assert view is not None
    assert view["skus"] == ["A", "M", "Z"]


@pytest.mark.parametrize("name", sorted(TRACKED_EVENTS - {"ReturnRequested"}))
def test_first_event_of_an_unknown_return_starts_from_requested(name: str) -> None:
    first = record(name)
    view = track(None, name, first)
    assert view is not None
    assert view["state"] == EXPECTED[(REQUESTED, name)]
    assert view["correlation_id"] == first["envelope"]["correlation_id"]


def test_inspection_records_its_scan_id() -> None:
    view = track(view_in(AWAITING_INSPECTION), "InspectionRecorded", record("InspectionRecorded"))
    assert view is not None
    assert view["scan_id"] == f"SCAN-{RID}"


@pytest.mark.parametrize("name", CLOSING)
def test_closing_event_is_remembered(name: str) -> None:
    view = track(view_in(AWAITING_PICKUP), name, record(name))
    assert view is not None
    assert view["closed_by"] == name


def test_skus_survive_later_events() -> None:
    view = track(None, "ReturnRequested", record("ReturnRequested"))
    for name in ["ReturnAccepted", "PickupCompleted", "InspectionRecorded", "ReturnCompleted"]:
        view = track(view, name, record(name)) or view
    assert view["skus"] == ["SKU-CAP", "SKU-RED-M"]
    assert view["state"] == CLOSED


def run(names: list[str]) -> dict[str, Any] | None:
    view = None
    for name in names:
        view = track(view, name, record(name)) or view
    return view


def test_happy_path_reaches_awaiting_inspection_then_inspected() -> None:
    states = []
    view = None
    for name in ["ReturnRequested", "ReturnAccepted", "PickupCompleted", "InspectionRecorded"]:
        view = track(view, name, record(name)) or view
        states.append(view["state"])
    assert states == [REQUESTED, AWAITING_PICKUP, AWAITING_INSPECTION, INSPECTED]


def test_pickup_completed_overtaking_return_accepted_still_awaits_inspection() -> None:
    view = run(["ReturnRequested", "PickupCompleted", "ReturnAccepted"])
    assert view is not None
    assert view["state"] == AWAITING_INSPECTION


def test_late_return_accepted_after_pickup_completed_changes_nothing() -> None:
    view = run(["ReturnRequested", "PickupCompleted"])
    assert track(view, "ReturnAccepted", record("ReturnAccepted")) is None


def test_pickup_completed_before_return_requested_still_awaits_inspection() -> None:
    view = run(["PickupCompleted", "ReturnRequested", "ReturnAccepted"])
    assert view is not None
    assert view["state"] == AWAITING_INSPECTION
    assert view["skus"] == ["SKU-CAP", "SKU-RED-M"]


def test_inspection_overtaking_pickup_completed_stays_inspected() -> None:
    view = run(["ReturnRequested", "ReturnAccepted", "InspectionRecorded", "PickupCompleted"])
    assert view is not None
    assert view["state"] == INSPECTED


def test_nothing_reopens_a_closed_return() -> None:
    view = run(["ReturnRequested", "ReturnCancelled"])
    for name in ["ReturnAccepted", "PickupCompleted", "InspectionRecorded", "ReturnRequested"]:
        view = track(view, name, record(name)) or view
        assert view["state"] == CLOSED


def test_redelivered_events_give_the_same_view() -> None:
    records = [(name, record(name)) for name in ["ReturnRequested", "ReturnAccepted"]]
    records.append(("PickupCompleted", record("PickupCompleted")))
    once = twice = None
    for name, rec in records:
        once = track(once, name, rec) or once
        for _ in range(2):
            twice = track(twice, name, rec) or twice
    assert once == twice
