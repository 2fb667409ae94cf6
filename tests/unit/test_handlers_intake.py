"""Warehouse intake's handlers over in-memory tables (no broker, no HTTP)."""

from __future__ import annotations

import asyncio
from typing import Any

from services.eventing.handler_contract import HttpRequest, Incoming
from services.warehouse_intake import handlers
from services.warehouse_intake.handlers import IntakePorts
from tests.support.return_events import envelope
from tests.unit.test_saga_refund_plan import item

RID = "RMA-INTAKE-1"


def intake_requested() -> Incoming:
    record = {
        "envelope": envelope("IntakeRequested", RID, "coordinator"),
        "warehouse_id": "WH-RETURNS-1",
        "items": [item("SKU-RED-M", "A"), item("SKU-CAP", "D")],
    }
    return Incoming("IntakeRequested", record, RID.encode())


def reverse_requested() -> Incoming:
    record = {
        "envelope": envelope("IntakeReverseRequested", RID, "coordinator"),
        "reason": "the refund failed for good",
    }
    return Incoming("IntakeReverseRequested", record, RID.encode())


def book_all(wired: IntakePorts, outbound: list[Any]) -> None:
    for name, record, *key in outbound:
        if name in ("StockMovementsRecorded", "StockMovementRecorded"):
            incoming = Incoming(name, record, key[0])
            asyncio.run(handlers.book_movement(wired, incoming))


def ids(outbound: list[Any]) -> list[str]:
    return [record[1]["envelope"]["event_id"] for record in outbound]


def ledger(wired: IntakePorts, **query: str) -> dict[str, Any]:
    return asyncio.run(handlers.ledger_view(wired, HttpRequest(query=query))).body


def test_an_intake_moves_every_item_in_one_record_keyed_by_warehouse_and_says_where():
    wired = IntakePorts({}, {})
    outbound = asyncio.run(handlers.take_in(wired, intake_requested()))
    names = [record[0] for record in outbound]
    assert names == ["StockMovementsRecorded", "IntakeCompleted"]
    _, movements, key = outbound[0]
    assert key == movements["warehouse_id"].encode()
    assert len(movements["movements"]) == 2
    book_all(wired, outbound)
    assert ledger(wired)["units_on_hand"] == 2
    assert ledger(wired, sku="SKU-CAP")["units_on_hand"] == 1


def test_a_redelivered_intake_produces_the_same_events_and_moves_nothing_twice():
    wired, command = IntakePorts({}, {}), intake_requested()
    first = asyncio.run(handlers.take_in(wired, command))
    again = asyncio.run(handlers.take_in(wired, command))
    assert ids(again) == ids(first)  # the same events (their time is when they were sent)
    assert [r[1].get("movements") for r in again] == [r[1].get("movements") for r in first]
    book_all(wired, first)
    book_all(wired, again)
    view = ledger(wired)
    assert (view["units_on_hand"], view["duplicates_ignored"]) == (2, 2)


def test_a_reversal_moves_what_the_intake_put_in_stock_to_quarantine():
    wired = IntakePorts({}, {})
    book_all(wired, asyncio.run(handlers.take_in(wired, intake_requested())))
    sellable = ledger(wired, sku="SKU-RED-M")["entries"]
    reversal = asyncio.run(handlers.take_in(wired, reverse_requested()))
    assert reversal[-1][0] == "IntakeReversed"
    book_all(wired, reversal)
    on_hand = {e["location"]: e["on_hand"] for e in ledger(wired, sku="SKU-RED-M")["entries"]}
    assert on_hand == {sellable[0]["location"]: 0, "WH-RETURNS-1/QUARANTINE": 1}
    assert ledger(wired)["units_on_hand"] == 2  # the units stay in the warehouse


def test_a_reversal_without_an_intake_moves_nothing():
    wired = IntakePorts({}, {})
    [(name, record)] = asyncio.run(handlers.take_in(wired, reverse_requested()))
    assert (name, record["movements"]) == ("IntakeReversed", [])


def test_the_ledger_still_books_the_older_one_record_per_item_form():
    wired = IntakePorts({}, {})
    outbound = asyncio.run(handlers.take_in(wired, intake_requested()))
    _, batch, _ = outbound[0]
    for movement in batch["movements"]:
        record = {"envelope": batch["envelope"], "warehouse_id": "WH", "movement": movement}
        key = f"{movement['sku']}@{movement['location']}".encode()
        asyncio.run(handlers.book_movement(wired, Incoming("StockMovementRecorded", record, key)))
    assert ledger(wired)["units_on_hand"] == 2
