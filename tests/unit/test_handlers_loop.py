"""The whole loop through the services' handlers, wired by their composition roots, with
in-memory tables and fake partners (tests/support/in_memory_loop.py): no broker, no HTTP
server. The e2e tests run the same handlers as OS processes on a real broker."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from services.coordinator import handlers as coordinator_handlers
from services.coordinator.handlers import saga_of
from services.decisions.saga import SagaConfig, Status
from services.engine.stored_value import Settled
from services.eventing.envelope import new_envelope
from tests.support.in_memory_loop import (
    InMemoryLoop,
    signed_carrier_callback,
    station_headers,
)
from tests.support.return_events import return_request_body
from tests.unit.test_saga_refund_plan import item


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def request_return(loop: InMemoryLoop, key: str = "key-1", **overrides: Any) -> str:
    body = json.dumps(return_request_body(**overrides)).encode()
    answer = await loop.call("returns", "POST", "/returns", body, {"Idempotency-Key": key})
    assert answer.status == 202, answer.body
    await loop.run()
    return answer.body["return_id"]


async def collect(loop: InMemoryLoop, return_id: str) -> None:
    booking = saga_of(loop.coordinator.sagas[return_id]).pickup
    body = json.dumps(
        {
            "callback_id": f"CB-{return_id}",
            "return_id": return_id,
            "booking_id": booking["booking_id"],
            "tracking_number": booking["tracking_number"],
            "status": "collected",
            "occurred_at": loop.clock(),
            "attempt_no": 1,
        }
    ).encode()
    headers = signed_carrier_callback(body, loop.clock.seconds())
    answer = await loop.call("pickup", "POST", "/carrier/callbacks", body, headers)
    assert answer.status == 202, answer.body
    await loop.run()


async def inspect(loop: InMemoryLoop, return_id: str, scan_id: str = "SCAN-1") -> Any:
    body = json.dumps(
        {
            "scan_id": scan_id,
            "return_id": return_id,
            "station_id": "ST-1",
            "inspector_id": "I-1",
            "items": [item("SKU-RED-M"), item("SKU-RED-M"), item("SKU-CAP")],
        }
    ).encode()
    answer = await loop.call("inspection", "POST", "/inspections", body, station_headers())
    await loop.run()
    return answer


async def completed_return(loop: InMemoryLoop) -> str:
    """A return requested, collected and inspected: its saga COMPLETED."""
    return_id = await request_return(loop)
    await collect(loop, return_id)
    await inspect(loop, return_id)
    return return_id


async def saga_view(loop: InMemoryLoop, return_id: str) -> dict[str, Any]:
    answer = await loop.call("coordinator", "GET", f"/returns/{return_id}")
    assert answer.status == 200
    return answer.body


def test_a_return_goes_from_the_front_door_to_the_refund_through_every_services_handlers():
    async def scenario() -> None:
        loop = InMemoryLoop()
        return_id = await request_return(loop)
        assert (await saga_view(loop, return_id))["status"] == Status.PICKUP_SCHEDULED
        assert [call for call, _ in loop.carrier.calls] == ["book"]
        await collect(loop, return_id)
        assert (await inspect(loop, return_id)).status == 202
        view = await saga_view(loop, return_id)
        assert view["status"] == Status.COMPLETED
        [order] = loop.psp.refunds.values()
        assert order.amount_minor == view["refund"]["amount"]["amount_minor"] > 0
        assert order.key == f"{return_id}-refund-1"
        ledger = await loop.call("warehouse-intake", "GET", "/ledger")
        assert ledger.body["units_on_hand"] == 3
        assert "ReturnCompleted" in loop.names("saga.events")
        [completed] = [  # decoded by the real codec: the schema carries every field
            record for _, name, record, _ in loop.delivered if name == "ReturnCompleted"
        ]
        # what settlement charges the liable party from travels on the completion
        assert completed["liable"] == view["refund"]["liable"]
        assert completed["breakdown"] == view["refund"]["breakdown"] != []
        assert completed["provider"] == view["refund"]["provider"] is not None
        assert completed["idempotency_key"] == order.key
        assert completed["refunded"] == view["refund"]["amount"]
        assert loop.inspection.returns[return_id]["state"] != "AWAITING_INSPECTION"

    run(scenario())


def test_a_finished_saga_is_kept_as_its_stored_bytes_and_still_shown_and_listed():
    async def scenario() -> None:
        loop = InMemoryLoop()
        return_id = await request_return(loop)
        await collect(loop, return_id)
        await inspect(loop, return_id)
        kept = loop.coordinator.sagas[return_id]
        assert isinstance(kept, Settled) and kept.label == Status.COMPLETED
        view = await saga_view(loop, return_id)
        assert view["status"] == Status.COMPLETED
        assert view["history"][-1]["event_type"] == "RefundIssued"
        listing = await loop.call("coordinator", "GET", "/returns", query={"status": "COMPLETED"})
        assert listing.body["counts"] == {"COMPLETED": 1}
        assert listing.body["return_ids"] == [return_id]
        # a restored finished saga is kept Settled too (the table's `settles`)
        config = loop.coordinator.config
        restored = coordinator_handlers.settled_saga(config, kept.stored_json(), kept.stored)
        assert restored == kept and restored.label == Status.COMPLETED
        assert restored.archive_at == kept.archive_at is not None
        live = {"status": "PICKUP_SCHEDULED"}
        assert coordinator_handlers.settled_saga(config, live, b"{}") is None

    run(scenario())


def test_replaying_every_record_of_a_completed_return_books_and_refunds_nothing_twice():
    async def scenario() -> None:
        loop = InMemoryLoop()
        return_id = await request_return(loop)
        await collect(loop, return_id)
        await inspect(loop, return_id)
        before = (await loop.call("warehouse-intake", "GET", "/ledger")).body
        assert await loop.replay() > len(loop.delivered) // 3
        after = (await loop.call("warehouse-intake", "GET", "/ledger")).body
        assert len(loop.psp.refunds) == 1
        assert [call for call, _ in loop.carrier.calls] == ["book"]
        assert after["units_on_hand"] == before["units_on_hand"] == 3
        assert after["movements_applied"] == before["movements_applied"]
        assert (await saga_view(loop, return_id))["status"] == Status.COMPLETED

    run(scenario())


def test_a_card_that_cannot_take_money_is_refunded_by_the_policys_fallback_store_credit():
    async def scenario() -> None:
        loop = InMemoryLoop()
        loop.psp.decline, loop.psp.declined_methods = "card_expired", frozenset({"CARD"})
        return_id = await request_return(loop)
        await collect(loop, return_id)
        await inspect(loop, return_id)
        view = await saga_view(loop, return_id)
        assert view["status"] == Status.COMPLETED
        assert [o.method for o in loop.psp.refunds.values()] == ["STORE_CREDIT"]  # paid ones
        failed = [r for _, n, r, _ in loop.delivered if n == "RefundFailed"]
        assert [(r["decline_code"], r["next_action"]) for r in failed] == [
            ("card_expired", "FALLBACK")
        ]

    run(scenario())


def test_a_provider_down_for_good_gives_a_retryable_failure_and_the_saga_asks_again_later():
    async def scenario() -> None:
        loop = InMemoryLoop()
        loop.psp.down = True
        return_id = await request_return(loop)
        await collect(loop, return_id)
        await inspect(loop, return_id)
        failed = [r for _, n, r, _ in loop.delivered if n == "RefundFailed"]
        assert [(r["retryable"], r["next_action"]) for r in failed] == [(True, "RETRY")]
        view = await saga_view(loop, return_id)
        assert view["status"] == Status.REFUND_PENDING
        assert view["timer"]["kind"] == "retry"

    run(scenario())


def test_a_second_return_of_the_same_units_is_refused_by_the_order_ledger():
    async def scenario() -> None:
        loop = InMemoryLoop()
        first = await request_return(loop, key="key-1")
        second = await request_return(loop, key="key-2")
        for return_id, scan_id in ((first, "SCAN-1"), (second, "SCAN-2")):
            await collect(loop, return_id)
            await inspect(loop, return_id, scan_id)
        statuses = [(await saga_view(loop, rid))["status"] for rid in (first, second)]
        assert statuses == [Status.COMPLETED, Status.NEEDS_ATTENTION]
        assert len(loop.psp.refunds) == 1
        ledger = await loop.call("refund", "GET", "/orders/ORD-1/refunds")
        assert ledger.status == 200

    run(scenario())


def flagged_seller(loop: InMemoryLoop, standing: str, day: int) -> tuple:
    """A seller's standing as the risk service's daily judgement publishes it."""
    key = "S-1|DE"
    record = {
        "envelope": new_envelope("SellerFlagged", key, "risk", occurred_at=loop.clock()),
        "seller_id": "S-1",
        "market": "DE",
        "standing": standing,
        "previous": "good",
        "calm_days": 0,
        "day": day,
        "reasons": [],
        "rates_json": "{}",
        "judged_at": loop.clock(),
    }
    return ("SellerFlagged", record, key.encode())


def test_every_view_folded_from_its_topics_is_the_table_the_handlers_wrote():
    """A view has no changelog: on assignment it is rebuilt by folding its topics
    (service_state.views() lists each as its app.py wires it). Folding every record the loop
    delivered gives back exactly what the handlers wrote, across all the paths here."""
    from services.tools.oncall.service_state import views

    async def scenario() -> InMemoryLoop:
        loop = InMemoryLoop(saga_config=SagaConfig(risk_step=1))  # risk decides too
        return_id = await request_return(loop)
        await collect(loop, return_id)
        await inspect(loop, return_id)
        await inspect(loop, return_id, scan_id="SCAN-1")  # the same scan again
        rejected = await request_return(loop, key="key-2", category="no-such-category")
        assert rejected
        await request_return(loop, key="key-3")
        await loop.publish(
            [flagged_seller(loop, "watch", 20_700), flagged_seller(loop, "good", 20_716)]
        )
        await loop.run()
        await loop.replay()  # every record delivered twice: folds take a record twice
        await loop.run()
        return loop

    loop = run(scenario())
    tables = {
        ("returns", "answers"): loop.returns.answers,
        ("pickup", "pickups"): loop.pickup.answered,
        ("inspection", "returns"): loop.inspection.returns,
        ("inspection", "scans"): loop.inspection.scans,
        ("warehouse-intake", "intakes"): loop.intake.intakes,
        ("refund", "refunds"): loop.refund.refunds,
        ("risk", "cases"): loop.risk.cases,
        ("risk", "standings"): loop.risk.standings,
    }
    assert set(tables) == set(views())
    for where, (topics, fold) in views().items():
        folded: dict[str, Any] = {}
        for topic, name, record, _key in loop.delivered:
            if topic in topics:
                fold(folded, name, record)
        assert json.loads(json.dumps(folded)) == json.loads(json.dumps(tables[where])), where
        assert folded, f"{where}: nothing folded"


def test_a_finished_saga_past_its_retention_is_archived_and_still_shown_and_listed():
    async def scenario() -> None:
        loop = InMemoryLoop()
        return_id = await completed_return(loop)
        ports = loop.coordinator
        before = await saga_view(loop, return_id)
        assert coordinator_handlers.archive_due_records(ports) == []  # not yet
        loop.clock.now_ms += ports.config.finished_retention_ms + 1
        due = coordinator_handlers.archive_due_records(ports)
        assert [name for name, _ in due] == ["SagaArchived"]
        await loop.publish(due)
        await loop.run()
        assert return_id not in ports.sagas  # the working state is gone
        after = await saga_view(loop, return_id)
        assert after["archived"] is True and after["status"] == Status.COMPLETED
        assert after["history"] == before["history"] and after["refund"] == before["refund"]
        listing = await loop.call("coordinator", "GET", "/returns", query={"status": "COMPLETED"})
        assert listing.body["counts"] == {"COMPLETED": 1}
        assert listing.body["return_ids"] == [return_id]
        # a late or replayed event of the archived return starts nothing again
        assert await loop.replay() > 0
        assert return_id not in ports.sagas
        assert [call for call, _ in loop.carrier.calls] == ["book"]
        assert len(loop.psp.refunds) == 1
        # archiving it again (the record made twice) is one archived saga
        await loop.publish(due)
        await loop.run()
        assert (await saga_view(loop, return_id))["archived"] is True

    run(scenario())


def test_a_saga_that_changed_after_its_archive_record_was_made_is_not_removed():
    async def scenario() -> None:
        loop = InMemoryLoop()
        return_id = await completed_return(loop)
        ports = loop.coordinator
        loop.clock.now_ms += ports.config.finished_retention_ms + 1
        [(name, record)] = coordinator_handlers.archive_due_records(ports)
        stale = {**record, "finished_at": record["finished_at"] - 1}
        await loop.publish([(name, stale)])
        await loop.run()
        assert return_id in ports.sagas

    run(scenario())
