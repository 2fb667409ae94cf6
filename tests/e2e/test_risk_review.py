"""The risk step on the running system (the real broker, every service as an OS process):
a swapped item is held and pays nothing until a reviewer approves it, then pays once; a
denied one ends rejected with the reviewer's reason and a ticket; a replay of the risk
topics changes no decision already acted on; the shadow rule set's decision is recorded
beside the live one and never acted on."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import orjson

from services.eventing.avro_codec import AvroCodec
from services.eventing.schema_catalogue import SchemaCatalogue
from services.eventing.topics import RISK_COMMANDS, RISK_EVENTS, SUPPORT_TICKETS
from services.tools.local_stack.stack import REVIEWER_TOKENS, LocalStack
from services.tools.oncall.audit_trail import read_trail
from services.tools.oncall.topic_reader import read_topic
from tests.e2e.scenario import (
    TERMINAL,
    create_return,
    post_scan_when_ready,
    scan,
    signed_in,
    wait_for_status,
)
from tests.e2e.test_oncall import REASON, refunds_at_psps, report, wait_caught_up
from tests.support.cli_process import run_cli

CODEC = AvroCodec(SchemaCatalogue.load())
REVIEWER = {"Authorization": f"Bearer {REVIEWER_TOKENS['reviewer-1']}"}
WINDOWS_CHANGELOG = "boomerang-risk-windows-changelog"


def place_order_with_serials(stack: LocalStack, order_ref: str) -> None:
    """The order as the marketplace shipped it (SKU-E2E-2 with serials SN-A, SN-B, SN-C),
    delivered three days ago."""
    placed = httpx.post(
        f"{stack.url('marketplace')}/orders",
        json={
            "order_ref": order_ref,
            "market": "DE",
            "buyer_id": f"B-{order_ref}",  # a buyer of its own: no history across tests
            "seller_id": "S-e2e",
            "currency": "EUR",
            "seller_currency": "EUR",
            "pickup_address": f"Musterstrasse 9, {order_ref}, Berlin",
            "lines": [
                {
                    "line_id": "L1",
                    "sku": "SKU-E2E-1",
                    "quantity": 2,
                    "unit_price_minor": 2599,
                    "commission_bps": 1000,
                },
                {
                    "line_id": "L2",
                    "sku": "SKU-E2E-2",
                    "quantity": 3,
                    "unit_price_minor": 1000,
                    "commission_bps": 1000,
                    "serials": ["SN-A", "SN-B", "SN-C"],
                },
            ],
        },
        timeout=10,
    )
    assert placed.status_code == 201, placed.text
    delivered = httpx.post(
        f"{stack.url('marketplace')}/orders/{order_ref}/delivered",
        json={"delivered_at": int((time.time() - 3 * 86_400) * 1000)},
        timeout=10,
    )
    assert delivered.status_code == 201, delivered.text
    key = orjson.dumps(f"order:{order_ref}")  # a changelog's keys are JSON strings
    deadline = time.monotonic() + 60
    while not any(  # counted into the order's window (the risk service's changelog)
        m.key == key
        for m in asyncio.run(
            read_topic(stack.bootstrap, WINDOWS_CHANGELOG, RISK_COMMANDS.partitions)
        )
    ):
        assert time.monotonic() < deadline, f"{order_ref} never counted by risk"
        time.sleep(0.5)


def swapped_return(http: httpx.Client, stack: LocalStack) -> str:
    """A return whose scan finds serial SN-1 on SKU-E2E-2: not one the order shipped."""
    order_ref = f"ORD-RISK-{uuid.uuid4().hex[:8]}"
    place_order_with_serials(stack, order_ref)
    choices = {  # the buyer's choices: every fact is the order's
        "order_ref": order_ref,
        "reason_code": "WRONG_SIZE",
        "lines": [{"order_line_id": "L1", "quantity": 2}, {"order_line_id": "L2", "quantity": 1}],
    }
    answer = http.post(
        f"{stack.url('returns')}/returns",
        json=choices,
        headers={"Idempotency-Key": uuid.uuid4().hex, **signed_in(http, stack, f"B-{order_ref}")},
    )
    assert answer.status_code == 202, answer.text
    return_id = answer.json()["return_id"]
    body, headers = scan(return_id)
    assert post_scan_when_ready(http, stack, body, headers, timeout=60).status_code == 202
    wait_for_status(http, stack, return_id, {"HELD_FOR_REVIEW"}, timeout=90)
    return return_id


def refunds_of(http: httpx.Client, stack: LocalStack, return_id: str) -> list[dict[str, Any]]:
    return [r for r in refunds_at_psps(http, stack) if r["return_id"] == return_id]


def case_of(http: httpx.Client, stack: LocalStack, return_id: str) -> dict[str, Any]:
    answer = http.get(f"{stack.url('risk')}/reviews/{return_id}", headers=REVIEWER)
    assert answer.status_code == 200, answer.text
    return answer.json()


def give(http: httpx.Client, stack: LocalStack, return_id: str, verdict: str, reason: str, **kw):
    return http.post(
        f"{stack.url('risk')}/reviews/{return_id}/verdict",
        json={"verdict": verdict, "reason": reason},
        headers=kw.get("headers", REVIEWER),
    )


def test_a_held_return_pays_nothing_until_approved_then_pays_once(stack, http):
    return_id = swapped_return(http, stack)
    time.sleep(2)  # held: nothing moves, whatever the wait
    assert wait_for_status(http, stack, return_id, {"HELD_FOR_REVIEW"})["status"]
    assert refunds_of(http, stack, return_id) == []
    queue = http.get(f"{stack.url('risk')}/reviews", headers=REVIEWER).json()
    [case] = [c for c in queue["cases"] if c["return_id"] == return_id]
    assert case["held"] and case["status"] == "open" and case["outcome"] == "hold"
    swap = [rule for rule in case["rules"] if rule["rule_id"] == "item-swap"]
    assert swap == [{"rule_id": "item-swap", "score": 70, "inputs": {"item.serial_shipped": False}}]

    assert give(http, stack, return_id, "approve", "no reason", headers={}).status_code == 401
    approved = give(http, stack, return_id, "approve", "serial misread at the station")
    assert approved.status_code == 200 and approved.json()["repeated"] is False
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
    assert view["status"] == "COMPLETED", view["outcome"]
    assert view["risk"]["verdict"]["reviewer"] == "reviewer-1"
    again = give(http, stack, return_id, "approve", "serial misread at the station")
    assert again.status_code == 200 and again.json()["repeated"] is True
    assert give(http, stack, return_id, "deny", "second opinion").status_code == 409
    time.sleep(2)
    assert len(refunds_of(http, stack, return_id)) == 1
    audited = [
        e
        for e in asyncio.run(read_trail(stack.bootstrap))
        if (e.get("selection") or {}).get("return_id") == return_id
    ]
    assert [(e["operation"], e["actor"]) for e in audited] == [("review approve", "reviewer-1")]

    # a replay of the risk topics for this return: no decision changes, nothing paid twice
    decided = case_of(http, stack, return_id)
    wait_caught_up(stack, ("coordinator", "risk"))
    for topic in (RISK_COMMANDS.name, RISK_EVENTS.name):
        selection = ("replay", "--topic", topic, "--return-id", return_id)
        dry = report(stack, *selection)
        assert dry["records"] >= 1 and dry["new_effects"] == 0, dry
        report(stack, *selection, "--execute", "--reason", REASON)
    wait_caught_up(stack, ("coordinator", "risk"))
    assert case_of(http, stack, return_id) == decided
    assert wait_for_status(http, stack, return_id, TERMINAL)["status"] == "COMPLETED"
    assert len(refunds_of(http, stack, return_id)) == 1


def test_a_denied_return_ends_rejected_with_the_reason_and_a_ticket(stack, http):
    return_id = swapped_return(http, stack)
    reviewer = ("review", "--url", stack.url("risk"), "--token", REVIEWER_TOKENS["reviewer-2"])
    listed = run_cli(stack.bootstrap, *reviewer, "list")
    assert listed.returncode == 0 and return_id in listed.stdout, listed.stderr
    shown = run_cli(stack.bootstrap, *reviewer, "show", return_id)
    assert "item-swap" in shown.stdout and "item.serial_shipped=False" in shown.stdout
    denied = run_cli(
        stack.bootstrap,
        *reviewer,
        "deny",
        return_id,
        "--reason",
        "a different device in the parcel",
    )
    assert denied.returncode == 0, denied.stdout + denied.stderr
    again = run_cli(stack.bootstrap, *reviewer, "deny", return_id, "--reason", "same again")
    assert "given before" in again.stdout
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=60)
    assert view["status"] == "REJECTED"
    assert view["outcome"]["failed_step"] == "RISK"
    assert "a different device in the parcel" in view["outcome"]["reason"]
    assert "reviewer-2" in view["outcome"]["reason"]
    tickets = [
        CODEC.decode(m.value).record
        for m in asyncio.run(
            read_topic(stack.bootstrap, SUPPORT_TICKETS.name, SUPPORT_TICKETS.partitions)
        )
        if m.key == return_id.encode()
    ]
    assert [t["category"] for t in tickets] == ["review-denied"]
    assert tickets[0]["ticket_id"] == view["outcome"]["ticket_id"]
    assert refunds_of(http, stack, return_id) == []


def test_the_shadow_rule_sets_decision_is_recorded_and_not_acted_on(stack, http):
    # a seller-fault claim the inspection finds nothing behind (grades A and B, no defect):
    # the shadow set (v2) reviews it, the live one (v1) approves; the live decision is acted on
    return_id = create_return(http, stack, reason_code="DEFECTIVE")
    body, headers = scan(return_id)
    assert post_scan_when_ready(http, stack, body, headers, timeout=60).status_code == 202
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
    assert view["status"] == "COMPLETED", view["outcome"]
    decided = case_of(http, stack, return_id)
    assert (decided["outcome"], decided["rule_set_version"], decided["case_id"]) == (
        "approve",
        1,
        None,
    )
    assert decided["shadow"] == {
        "live": "approve",
        "shadow": "review",
        "shadow_version": 2,
        "agrees": False,
        "only_live": [],
        "only_shadow": ["overturned-claim"],
    }
    assert view["risk"]["outcome"] == "approve"
    assert len(refunds_of(http, stack, return_id)) == 1
