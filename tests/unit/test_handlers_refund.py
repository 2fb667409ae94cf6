"""The refund service's handlers with fake payment providers and a fake marketplace (no
broker, no HTTP). Commands come from the saga (tests/support/in_memory_loop.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from services.decisions.refunds.provider_routing import ProviderRoutes
from services.eventing.handler_contract import HttpRequest, Incoming, TransientFailure
from services.eventing.request_fields import ApiError
from services.refund import handlers
from services.refund.handlers import (
    InvalidRefundCommand,
    MisroutedLedgerCommand,
    Partners,
    RefundPorts,
)
from tests.support.fake_partners import FakeMarketplace, FakePsp, Published
from tests.support.in_memory_loop import PSP_SECRET, signed_psp_webhook
from tests.support.return_events import envelope

NOW_S = 1_790_000_000
RID = "RMA-REFUND-1"


def ports(*providers: FakePsp, marketplace: FakeMarketplace | None = None) -> RefundPorts:
    providers = providers or (FakePsp(),)
    names = [p.name for p in providers]
    routes = ProviderRoutes.parse(json.dumps({"*": names}), names)
    partners = Partners({p.name: p for p in providers}, routes, {"psp": PSP_SECRET}, marketplace)
    return RefundPorts({}, {}, {}, partners, Published(), lambda: NOW_S)


def refund_requested(amount: int = 4498, key: str = f"{RID}-refund-1", **extra: Any) -> Incoming:
    record = {
        "envelope": envelope("RefundRequested", RID, "coordinator"),
        "amount": {"amount_minor": amount, "currency": "EUR"},
        "method": "CARD",
        "idempotency_key": key,
        "lines": [{"order_line_id": "L1", "amount": {"amount_minor": amount, "currency": "EUR"}}],
        "order_ref": "ORD-1",
        **extra,
    }
    return Incoming("RefundRequested", record, RID.encode())


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_a_refund_is_paid_once_and_a_redelivered_command_re_emits_the_stored_result():
    wired, command = ports(), refund_requested()
    first = run(handlers.handle_refund_command(wired, command))
    again = run(handlers.handle_refund_command(wired, command))
    [(name, record)] = first
    assert (name, record["status"], record["provider"]) == ("RefundIssued", "SUCCEEDED", "psp")
    assert again == first
    assert len(wired.partners.providers["psp"].refunds) == 1
    # an answered refund needs no route: its stored answer names the provider
    assert RID not in wired.routes
    assert wired.refunds[RID][command.event_id][1]["provider"] == "psp"


def test_lines_that_do_not_add_up_to_the_amount_are_refused_before_any_provider_is_asked():
    wired = ports()
    command = refund_requested()
    command.record["lines"][0]["amount"]["amount_minor"] = 1
    with pytest.raises(InvalidRefundCommand):
        run(handlers.handle_refund_command(wired, command))
    assert wired.partners.providers["psp"].refunds == {}


def test_a_provider_that_cannot_be_reached_fails_over_to_the_next_one():
    first, second = FakePsp("psp", down=True), FakePsp("psp-b")
    wired = ports(first, second)
    command = refund_requested()
    [(name, record)] = run(handlers.handle_refund_command(wired, command))
    assert (name, record["provider"]) == ("RefundIssued", "psp-b")
    first.down = False  # back up: a redelivered command is answered from the stored answer
    assert run(handlers.handle_refund_command(wired, command)) == [(name, record)]
    assert first.refunds == {} and len(second.refunds) == 1


def test_a_request_that_may_have_reached_a_provider_stays_with_it():
    first, second = FakePsp("psp", flaky=True), FakePsp("psp-b")
    wired = ports(first, second)
    with pytest.raises(TransientFailure):
        run(handlers.handle_refund_command(wired, refund_requested()))
    assert wired.routes[RID] == {f"{RID}-refund-1": "psp"}
    first.flaky = False
    [(_, record)] = run(handlers.handle_refund_command(wired, refund_requested()))
    assert record["provider"] == "psp" and second.refunds == {}


def test_a_decline_says_what_comes_next_and_exhausted_retries_become_a_retryable_failure():
    wired = ports(FakePsp(decline="fraud_suspected"))
    [(name, record)] = run(handlers.handle_refund_command(wired, refund_requested()))
    assert (name, record["next_action"], record["retryable"]) == (
        "RefundFailed",
        "NEEDS_ATTENTION",
        False,
    )
    error = TransientFailure("psp: 503")
    [(name, record)] = run(handlers.partner_unreachable(wired, refund_requested(), error))
    assert (name, record["next_action"], record["retryable"]) == ("RefundFailed", "RETRY", True)


def test_the_answers_view_folded_from_refund_events_is_what_the_handler_stored():
    """The `refunds` view has no changelog: folded from refund.events it must hold each
    command's stored answer, and not the retryable failure of a command that gave up (which
    the handler does not store: a redelivered command asks the provider again)."""
    psp = FakePsp()
    wired = ports(psp)
    paid, declined = refund_requested(), refund_requested(key=f"{RID}-refund-2")
    outbound = run(handlers.handle_refund_command(wired, paid))
    gave_up = run(handlers.partner_unreachable(wired, declined, TransientFailure("psp: 503")))
    folded: dict[str, Any] = {}
    for name, record in [*outbound, *gave_up]:
        handlers.fold_answers(folded, name, record)
        handlers.fold_answers(folded, name, record)  # a record folded twice changes nothing
    assert json.loads(json.dumps(folded)) == json.loads(json.dumps(wired.refunds))
    wired.refunds = folded
    assert run(handlers.handle_refund_command(wired, paid)) == outbound
    assert list(psp.refunds) == [f"{RID}-refund-1"]
    run(handlers.handle_refund_command(wired, declined))  # the one that gave up asks again
    assert list(psp.refunds) == [f"{RID}-refund-1", f"{RID}-refund-2"]


def void_requested(refund_id: str) -> Incoming:
    record = {
        "envelope": envelope("RefundVoidRequested", RID, "coordinator"),
        "provider_refund_id": refund_id,
        "idempotency_key": f"{RID}-void-refund",
    }
    return Incoming("RefundVoidRequested", record, RID.encode())


def test_a_void_reaches_the_provider_that_issued_the_refund_or_reports_money_already_moved():
    psp = FakePsp(status="PENDING")
    wired = ports(psp)
    [(_, issued)] = run(handlers.handle_refund_command(wired, refund_requested()))
    [(name, _)] = run(
        handlers.handle_refund_command(wired, void_requested(issued["provider_refund_id"]))
    )
    assert (name, psp.voids) == ("RefundVoided", [issued["provider_refund_id"]])
    psp.void_outcome = "already_settled"
    late = void_requested(issued["provider_refund_id"])
    [(name, record)] = run(handlers.handle_refund_command(wired, late))
    assert (name, record["status"]) == ("RefundIssued", "SUCCEEDED")
    with pytest.raises(InvalidRefundCommand):
        run(handlers.handle_refund_command(wired, void_requested("no-such-refund")))


def replacement_requested(quantity: int = 1) -> Incoming:
    record = {
        "envelope": envelope("ReplacementOrderRequested", RID, "coordinator"),
        "idempotency_key": f"{RID}-replacement",
        "order_ref": "ORD-1",
        "buyer_id": "B-1",
        "sku": "SKU-RED-L",
        "quantity": quantity,
        "ship_to": "Musterstrasse 1, Berlin",
    }
    return Incoming("ReplacementOrderRequested", record, RID.encode())


def test_an_exchange_places_a_replacement_or_reports_out_of_of_stock_or_waits_for_a_marketplace():
    wired = ports(marketplace=FakeMarketplace(in_stock=1))
    [(name, _)] = run(handlers.handle_refund_command(wired, replacement_requested(1)))
    assert name == "ReplacementOrderPlaced"
    [(name, record)] = run(
        handlers.handle_refund_command(
            ports(marketplace=FakeMarketplace(0)), replacement_requested(2)
        )
    )
    assert (name, record["available"]) == ("ReplacementOutOfStock", 0)
    with pytest.raises(TransientFailure, match="MARKETPLACE_URL"):
        run(handlers.handle_refund_command(ports(), replacement_requested()))


def test_the_order_ledger_refuses_a_command_written_under_another_key():
    wired = ports()
    record = {
        "envelope": envelope("RefundReservationRequested", RID, "coordinator"),
        "order_ref": "ORD-1",
    }
    with pytest.raises(MisroutedLedgerCommand):
        run(
            handlers.keep_order_ledger(
                wired, Incoming("RefundReservationRequested", record, RID.encode())
            )
        )
    missing = run(handlers.order_refunds(wired, HttpRequest(), "ORD-1"))
    assert missing.status == 404


def webhook(**overrides: Any) -> bytes:
    body = {
        "webhook_id": "wh_1",
        "type": "refund.settled",
        "provider": "psp",
        "occurred_at": NOW_S * 1000,
        "refund": {
            "refund_id": "psp-R1",
            "return_id": RID,
            "amount_minor": 4498,
            "currency": "EUR",
            "method": "CARD",
            "status": "succeeded",
        },
    }
    return json.dumps(body | overrides).encode()


def test_a_signed_settlement_webhook_is_one_event_however_often_it_is_delivered():
    wired, body = ports(), webhook()
    request = HttpRequest(body, signed_psp_webhook(body, NOW_S))
    answers = [run(handlers.psp_webhook(wired, request)) for _ in range(2)]
    assert [a.status for a in answers] == [202, 202]
    assert wired.publish.names() == ["RefundSettled", "RefundSettled"]
    ids = {record["envelope"]["event_id"] for _, record in wired.publish.records}
    assert len(ids) == 1  # re-deliveries carry one event id: the saga applies it once


def test_a_webhook_from_an_unknown_provider_or_badly_signed_is_401_and_publishes_nothing():
    wired = ports()
    unknown = webhook(provider="psp-x")
    with pytest.raises(ApiError) as refused:
        run(handlers.psp_webhook(wired, HttpRequest(unknown, signed_psp_webhook(unknown, NOW_S))))
    assert (refused.value.status, refused.value.code) == (401, "unknown_provider")
    with pytest.raises(ApiError) as refused:
        run(handlers.psp_webhook(wired, HttpRequest(webhook(), {})))
    assert (refused.value.status, refused.value.code) == (401, "bad_signature")
    assert wired.publish.records == []
