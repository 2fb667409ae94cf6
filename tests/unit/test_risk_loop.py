"""The risk step through every service's handlers (in memory, the real codec): orders and
returns counted per key, a swapped item held before any money moves, a reviewer's verdict
through the HTTP handlers (authenticated, idempotent, audited), paid once, and a replay of
every topic that changes no decision and pays nothing twice."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from services.coordinator.handlers import saga_of
from services.decisions.saga import SagaConfig, Status
from services.eventing.handler_contract import HttpAnswer
from services.eventing.request_fields import ApiError
from services.tools.partners.marketplace_orders import order_event
from tests.support.in_memory_loop import REVIEWER_TOKEN, InMemoryLoop, station_headers
from tests.support.return_events import inspected_item
from tests.unit.test_handlers_loop import collect, request_return

RISK_ON = SagaConfig(risk_step=1)
REVIEWER = {"Authorization": f"Bearer {REVIEWER_TOKEN}"}


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def place_order(loop: InMemoryLoop, order_ref: str, serials: list[str]) -> None:
    order = {
        "order_ref": order_ref,
        "market": "DE",
        "buyer_id": "B-1",
        "seller_id": "S-1",
        "currency": "EUR",
        "seller_currency": "EUR",
        "fx_rate": "1",
        "shipping_fee_minor": 0,
        "paid_with": "CARD",
        "pickup_address": "Musterstrasse 1, Berlin",
        "lines": [
            {
                "line_id": "L1",
                "sku": "SKU-RED-M",
                "quantity": len(serials),
                "unit_price_minor": 2249,
                "discount_minor": 0,
                "commission_bps": 1000,
                "serials": serials,
            }
        ],
        "placed_at": loop.clock() - 20 * 86_400_000,
    }
    await loop.publish([("OrderPlaced", order_event("OrderPlaced", order, order["placed_at"]))])
    await loop.run()


async def inspect_serials(loop: InMemoryLoop, return_id: str, serials: list[str]) -> None:
    items = [inspected_item(sku="SKU-RED-M", serial=serial) for serial in serials]
    body = json.dumps(
        {
            "scan_id": f"SCAN-{return_id}",
            "return_id": return_id,
            "station_id": "ST-1",
            "inspector_id": "I-1",
            "items": items,
        }
    ).encode()
    answer = await loop.call("inspection", "POST", "/inspections", body, station_headers())
    assert answer.status == 202, answer.body
    await loop.run()


async def held_return(loop: InMemoryLoop, key: str, order_ref: str) -> str:
    await place_order(loop, order_ref, ["SN-1", "SN-2"])
    return_id = await request_return(loop, key=key, order_ref=order_ref)
    await collect(loop, return_id)
    await inspect_serials(loop, return_id, ["SN-1", "SN-FAKE"])  # not shipped: a swap
    return return_id


def status(loop: InMemoryLoop, return_id: str) -> Status:
    return saga_of(loop.coordinator.sagas[return_id]).status


async def verdict(loop: InMemoryLoop, return_id: str, verdict: str, reason: str, headers=None):
    body = json.dumps({"verdict": verdict, "reason": reason}).encode()
    path = f"/reviews/{return_id}/verdict"
    try:
        return await loop.call("risk", "POST", path, body, REVIEWER if headers is None else headers)
    except ApiError as refusal:  # as the HTTP layer answers it
        return HttpAnswer(refusal.status, refusal.body())


def test_a_swapped_item_is_held_and_paid_once_after_a_reviewer_approves():
    async def scenario() -> None:
        loop = InMemoryLoop(saga_config=RISK_ON)
        return_id = await held_return(loop, "key-1", "ORD-HELD-1")
        assert status(loop, return_id) == Status.HELD_FOR_REVIEW
        assert loop.psp.refunds == {}, "no money moves while held"
        [flag] = [r for _, n, r, _ in loop.delivered if n == "BuyerFlagged"]
        assert (flag["buyer_id"], flag["market"], flag["outcome"]) == ("B-1", "DE", "hold")
        assert flag["until_day"] - flag["day"] == 90
        listed = await loop.call("risk", "GET", "/reviews", headers=REVIEWER)
        [case] = listed.body["cases"]
        assert case["return_id"] == return_id and case["held"] and case["status"] == "open"
        assert [rule["rule_id"] for rule in case["rules"]] == ["item-swap"]
        assert case["rules"][0]["inputs"] == {"item.serial_shipped": False}
        assert case["buyer_id"] == "B-1"

        unauthenticated = await verdict(loop, return_id, "approve", "serial typo", headers={})
        assert unauthenticated.status == 401
        approved = await verdict(loop, return_id, "approve", "serial typo at the station")
        assert approved.status == 200 and not approved.body["repeated"]
        await loop.run()
        assert status(loop, return_id) == Status.COMPLETED
        assert len(loop.psp.refunds) == 1
        again = await verdict(loop, return_id, "approve", "serial typo at the station")
        assert again.status == 200 and again.body["repeated"]
        other = await verdict(loop, return_id, "deny", "changed my mind about it")
        assert other.status == 409
        assert [event["operation"] for event in loop.audit_trail] == ["review approve"]
        shown = await loop.call("risk", "GET", f"/reviews/{return_id}", headers=REVIEWER)
        assert shown.body["status"] == "approved"
        assert shown.body["verdict"]["reviewer"] == "reviewer-1"

        decided = [r for _, n, r, _ in loop.delivered if n == "RiskDecided"]
        await loop.replay()  # every topic delivered again
        await loop.run()
        assert len(loop.psp.refunds) == 1, "a replay pays nothing twice"
        assert status(loop, return_id) == Status.COMPLETED
        again_decided = {
            r["envelope"]["event_id"] for _, n, r, _ in loop.delivered if n == "RiskDecided"
        }
        assert again_decided == {r["envelope"]["event_id"] for r in decided}
        assert loop.risk.cases[return_id]["decided"] == decided[0], "the first decision stands"

    run(scenario())


def test_a_denied_return_ends_rejected_with_the_reason_and_a_ticket_and_pays_nothing():
    async def scenario() -> None:
        loop = InMemoryLoop(saga_config=RISK_ON)
        return_id = await held_return(loop, "key-2", "ORD-HELD-2")
        denied = await verdict(loop, return_id, "deny", "a different item in the parcel")
        assert denied.status == 200
        await loop.run()
        saga = saga_of(loop.coordinator.sagas[return_id])
        assert saga.status == Status.REJECTED
        assert "a different item in the parcel" in saga.outcome["reason"]
        tickets = [r for _, n, r, _ in loop.delivered if n == "TicketOpened"]
        assert [t["category"] for t in tickets] == ["review-denied"]
        assert loop.psp.refunds == {}

    run(scenario())


def test_an_honest_return_is_approved_and_orders_and_returns_are_counted_per_key():
    async def scenario() -> None:
        loop = InMemoryLoop(saga_config=RISK_ON)
        await place_order(loop, "ORD-OK-1", ["SN-1", "SN-2"])
        return_id = await request_return(loop, key="key-3", order_ref="ORD-OK-1")
        await collect(loop, return_id)
        await inspect_serials(loop, return_id, ["SN-1", "SN-2"])
        assert status(loop, return_id) == Status.COMPLETED
        assert loop.risk.cases[return_id]["decided"]["outcome"] == "approve"
        assert loop.risk.cases[return_id]["decided"]["case_id"] is None
        windows = loop.risk.windows
        assert {"buyer:B-1", "seller:S-1", "order:ORD-OK-1", "sku:SKU-RED-M"} <= set(windows)
        buyer_days = windows["buyer:B-1"]["window"]["days"].values()
        assert sum(day["counts"].get("orders", 0) for day in buyer_days) == 1
        assert sum(day["counts"].get("returns", 0) for day in buyer_days) == 1
        before = json.dumps(windows, sort_keys=True)
        await loop.replay()
        await loop.run()
        assert json.dumps(windows, sort_keys=True) == before, "a replay counts nothing twice"

    run(scenario())


def test_return_facts_read_after_the_risk_check_are_still_counted():
    """The risk check may be decided before the return's own events are read (a backlog of
    counts folded first): the entry the check made has no lines; the request fills them in
    and the acceptance is counted, not dead-lettered (seen in the demo with metrics)."""
    from services.decisions.risk.risk_check import request_of
    from services.eventing.handler_contract import Incoming
    from services.eventing.topics import RETURNS_EVENTS
    from services.risk import handlers as risk_handlers
    from tests.support.return_events import event

    async def scenario() -> None:
        loop = InMemoryLoop(saga_config=RISK_ON)
        return_id = "RMA-CHECK-FIRST"
        requested = event("ReturnRequested", return_id)
        loop.risk.returns[return_id] = {"request": request_of(requested), "counted": []}
        outbound = []
        for offset, name in enumerate(("ReturnRequested", "ReturnAccepted")):
            record = requested if name == "ReturnRequested" else event(name, return_id)
            incoming = Incoming(name, record, return_id.encode(), RETURNS_EVENTS.name, 0, offset)
            outbound += await risk_handlers.count_return_events(loop.risk, incoming)
        assert "lines" in loop.risk.returns[return_id]["request"]
        assert loop.risk.returns[return_id]["counted"] == ["accepted"]
        assert outbound, "the acceptance is counted"

    run(scenario())
