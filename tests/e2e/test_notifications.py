"""Buyers and sellers are told of every milestone of their return, once: the notifications
service (a real process) reads the milestones from the broker and sends each through the
notification-provider double over HTTP; a replay of every milestone topic of the return
sends nothing again."""

from __future__ import annotations

import json
import time
from collections import Counter

from services.tools.local_stack.stack import LocalStack
from tests.e2e.scenario import (
    TERMINAL,
    create_return,
    post_scan_when_ready,
    scan,
    set_partner_faults,
    wait_for_status,
)
from tests.support.cli_process import run_cli

MILESTONE_TOPICS = (
    "boomerang.returns.events",
    "boomerang.pickup.events",
    "boomerang.inspection.events",
    "boomerang.refund.events",
    "boomerang.saga.events",
)
# what a return collected at the first attempt and refunded by card tells whom
EXPECTED = {
    ("accepted", "buyer"),
    ("accepted", "seller"),
    ("pickup_booked", "buyer"),
    ("inspected", "buyer"),
    ("inspected", "seller"),
    ("refunded", "buyer"),
    ("closed", "buyer"),
    ("closed", "seller"),
}


def messages_of(http, stack: LocalStack, return_id: str) -> list[dict]:
    answer = http.get(f"{stack.url('notify')}/messages", params={"return_id": return_id})
    return answer.json()["messages"]


def wait_for_messages(http, stack, return_id: str, wanted: set, timeout: float = 60) -> list:
    deadline = time.monotonic() + timeout
    while True:
        messages = messages_of(http, stack, return_id)
        told = {(m["milestone"], m["recipient_role"]) for m in messages}
        if wanted <= told:
            return messages
        assert time.monotonic() < deadline, f"told {sorted(told)}, not {sorted(wanted - told)}"
        time.sleep(0.5)


def test_every_milestone_is_told_once_in_the_markets_language_and_a_replay_tells_nothing(
    stack, http
):
    return_id = create_return(http, stack, payment_method="CARD")
    body, headers = scan(return_id)
    assert post_scan_when_ready(http, stack, body, headers, timeout=60).status_code == 202
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
    assert view["status"] == "COMPLETED", view["outcome"]
    messages = wait_for_messages(http, stack, return_id, EXPECTED)
    told = Counter((m["milestone"], m["recipient_role"]) for m in messages)
    assert set(told) - EXPECTED <= {("pickup_failed", "buyer")}, told  # a missed pickup, if any
    assert all(n == 1 for key, n in told.items() if key[0] != "pickup_failed"), told
    assert {m["language"] for m in messages} == {"de"}  # a DE return
    buyer = view["request"]["buyer_id"]
    assert {m["recipient_id"] for m in messages if m["recipient_role"] == "buyer"} == {buyer}
    [refunded] = [m for m in messages if m["milestone"] == "refunded"]
    assert "EUR" in refunded["body"] and "," in refunded["body"]  # 55,02 EUR
    assert "$" not in "".join(m["subject"] + m["body"] for m in messages)
    # the notifier's own account of it: all sent, nothing waiting
    deadline = time.monotonic() + 30
    while True:
        kept = http.get(f"{stack.url('notifications')}/returns/{return_id}/notifications")
        if kept.status_code == 200 and not kept.json()["pending"]:
            break
        assert time.monotonic() < deadline, kept.text
        time.sleep(0.5)
    assert len(kept.json()["sent"]) == len(messages)
    stats_before = http.get(f"{stack.url('notify')}/messages/stats").json()

    for topic in MILESTONE_TOPICS:  # on call re-delivers every milestone of the return
        done = run_cli(
            stack.bootstrap,
            "replay",
            "--topic",
            topic,
            "--return-id",
            return_id,
            "--execute",
            "--reason",
            "e2e: notifications redelivered",
            "--json",
            operator="e2e-oncall@boomerang",
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["result"]["published"] > 0
    time.sleep(5)  # a second message, had there been one, would have reached the provider
    assert len(messages_of(http, stack, return_id)) == len(messages)
    stats = http.get(f"{stack.url('notify')}/messages/stats").json()
    assert stats["duplicates"] == 0
    assert stats["replays"] == stats_before["replays"]  # not even sent again: known as sent


def test_the_provider_down_delays_notices_and_never_the_return(stack, http):
    set_partner_faults(http, stack, "notify", error_rate=1.0)
    try:
        return_id = create_return(http, stack)
        wait_for_status(http, stack, return_id, {"PICKUP_SCHEDULED", "AWAITING_INSPECTION"})
        time.sleep(3)
        assert messages_of(http, stack, return_id) == []
        kept = http.get(f"{stack.url('notifications')}/returns/{return_id}/notifications")
        pending = kept.json()["pending"]
        assert pending and max(p["attempts"] for p in pending) >= 1, kept.text
    finally:
        set_partner_faults(http, stack, "notify", error_rate=0.0)
    # retried after 5 s (doubling): told once the provider is back
    wait_for_messages(http, stack, return_id, {("accepted", "buyer"), ("pickup_booked", "buyer")})
