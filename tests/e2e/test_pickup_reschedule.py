"""The buyer moves a booked pickup (front door → saga → pickup service → the carrier double
over HTTP), then the parcel is collected in the new window and the return completes."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from tests.e2e.scenario import (
    as_buyer_of,
    create_return,
    post_scan_when_ready,
    scan,
    set_partner_faults,
    status,
    wait_for_status,
)
from tests.e2e.test_notifications import wait_for_messages

HOUR_MS = 3_600_000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def test_a_reschedule_then_a_successful_pickup(stack, http):
    # the carrier holds the first attempt: the buyer moves the pickup before it
    set_partner_faults(http, stack, "carrier", first_attempt_delay_ms=120_000)
    try:
        return_id = create_return(http, stack)
        wait_for_status(http, stack, return_id, {"PICKUP_SCHEDULED"}, timeout=60)
        start = (int(time.time() * 1000) // HOUR_MS + 26) * HOUR_MS  # tomorrow, on the hour
        window = {"window_start": iso(start), "window_end": iso(start + 4 * HOUR_MS)}
        url = f"{stack.url('returns')}/returns/{return_id}/pickup-window"
        asked = http.post(url, json=window, headers=as_buyer_of(http, stack, return_id))
        assert asked.status_code == 202, asked.text
        deadline = time.monotonic() + 60
        while (view := status(http, stack, return_id)) and not view["pickup"].get("reschedules"):
            assert time.monotonic() < deadline, view
            time.sleep(0.3)
        assert view["pickup"]["window_start"] == start
        assert view["pickup"]["reschedules"] == view["pickup"]["reschedules_asked"] == 1
    finally:
        set_partner_faults(http, stack, "carrier", first_attempt_delay_ms=0)
    # collected in the new window (the carrier's attempts start again from the move)
    wait_for_status(http, stack, return_id, {"AWAITING_INSPECTION"}, timeout=60)
    body, headers = scan(return_id)
    assert post_scan_when_ready(http, stack, body, headers, timeout=60).status_code == 202
    done = wait_for_status(http, stack, return_id, {"COMPLETED"}, timeout=90)
    assert done["pickup"]["reschedules"] == 1
    [booking] = http.get(f"{stack.url('carrier')}/pickups", params={"return_id": return_id}).json()[
        "pickups"
    ]
    assert (booking["reschedules"], booking["status"]) == (1, "collected")
    assert booking["window_start"] == start
    wait_for_messages(
        http, stack, return_id, {("pickup_rescheduled", "buyer"), ("closed", "buyer")}
    )


def test_a_drop_off_instead_of_the_courier_then_the_return_completes(stack, http):
    set_partner_faults(http, stack, "carrier", first_attempt_delay_ms=120_000)
    try:
        return_id = create_return(http, stack)
        wait_for_status(http, stack, return_id, {"PICKUP_SCHEDULED"}, timeout=60)
        url = f"{stack.url('returns')}/returns/{return_id}/drop-off"
        buyer = as_buyer_of(http, stack, return_id)
        chosen = http.post(url, json={"point_id": "DP-BER-12"}, headers=buyer)
        assert chosen.status_code == 202, chosen.text
        deadline = time.monotonic() + 60
        while (view := status(http, stack, return_id)) and not view["pickup"].get("drop_off"):
            assert time.monotonic() < deadline, view
            time.sleep(0.3)
        assert view["pickup"]["drop_off"]["point_id"] == "DP-BER-12"
    finally:
        set_partner_faults(http, stack, "carrier", first_attempt_delay_ms=0)
    wait_for_status(http, stack, return_id, {"AWAITING_INSPECTION"}, timeout=60)
    body, headers = scan(return_id)
    assert post_scan_when_ready(http, stack, body, headers, timeout=60).status_code == 202
    wait_for_status(http, stack, return_id, {"COMPLETED"}, timeout=90)
    [booking] = http.get(f"{stack.url('carrier')}/pickups", params={"return_id": return_id}).json()[
        "pickups"
    ]
    assert booking["drop_off"]["code"] == view["pickup"]["drop_off"]["code"]
    wait_for_messages(http, stack, return_id, {("drop_off_booked", "buyer")})
