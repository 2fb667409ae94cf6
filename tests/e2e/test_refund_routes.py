"""Money back the way the buyer paid, on the real processes: a card refund settled by the
provider's signed webhook, failover to the second card provider, BNPL schedules, bank
transfers that wait for the buyer's account, declines that fall back to store credit (and
exchanges: tests/e2e/test_exchanges.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.scenario import (
    EXPECTED_REFUND_MINOR,
    TERMINAL,
    as_buyer_of,
    create_return,
    post_scan_when_ready,
    scan,
    set_partner_faults,
    wait_for_status,
)

ACCOUNT = {
    "holder": "Erika Mustermann",
    "number": "DE89 3704 0044 0532 0130 00",
    "bank_code": "COBADEFF",
}


@pytest.fixture
def psp_faults(stack, http) -> Iterator:
    def set_faults(provider: str = "psp", **plan) -> None:
        set_partner_faults(http, stack, provider, **plan)

    yield set_faults
    off = {
        "decline_rate": 0,
        "pending_rate": 0,
        "settlement_failure_rate": 0,
        "declined_methods": ["ALL"],
    }
    for provider in ("psp", "psp-b"):
        http.post(f"{stack.url(provider)}/admin/faults", json=off)


def through_inspection(http, stack, **changes) -> str:
    return_id = create_return(http, stack, **changes)
    body, headers = scan(return_id)
    assert post_scan_when_ready(http, stack, body, headers, timeout=60).status_code == 202
    return return_id


def refunds_at(http, stack, provider: str, return_id: str) -> list[dict]:
    answer = http.get(f"{stack.url(provider)}/refunds", params={"return_id": return_id}).json()
    return answer["refunds"]


def test_a_pending_card_refund_completes_when_the_signed_webhook_settles_it(
    stack, http, psp_faults
):
    psp_faults(pending_rate=1.0)
    return_id = through_inspection(http, stack)
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
    assert view["status"] == "COMPLETED", view["outcome"]
    assert view["refund"]["status"] == "SUCCEEDED"
    assert view["refund"]["settled_at"] > 0
    events = [h["event_type"] for h in view["history"]]
    assert events[-2:] == ["RefundIssued", "RefundSettled"]
    [refund] = refunds_at(http, stack, "psp", return_id)
    assert (refund["status"], refund["amount_minor"]) == ("succeeded", EXPECTED_REFUND_MINOR)


def test_a_card_refund_goes_to_the_second_provider_while_the_first_is_down(stack, http):
    return_id = create_return(http, stack)
    wait_for_status(http, stack, return_id, {"PICKUP_SCHEDULED", "AWAITING_INSPECTION"})
    stack.stop("psp")
    try:
        body, headers = scan(return_id)
        assert post_scan_when_ready(http, stack, body, headers, timeout=60).status_code == 202
        view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
    finally:
        stack.start("psp")
        stack.wait_healthy(["psp"])
    assert view["status"] == "COMPLETED", view["outcome"]
    assert view["refund"]["provider"] == "psp-b"
    assert refunds_at(http, stack, "psp", return_id) == []
    [refund] = refunds_at(http, stack, "psp-b", return_id)
    assert refund["amount_minor"] == EXPECTED_REFUND_MINOR


def test_a_bnpl_refund_shows_the_reduced_instalment_plan(stack, http):
    return_id = through_inspection(http, stack, payment_method="BNPL")
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
    assert view["status"] == "COMPLETED", view["outcome"]
    schedule = view["refund"]["bnpl_schedule"]
    assert schedule and {i["status"] for i in schedule} <= {"PAID", "DUE", "CANCELLED"}
    paid_total = view["refund"]["order_paid_minor"]
    due_before = paid_total - schedule[0]["amount_minor"]  # instalment 1 was paid
    due_after = sum(i["amount_minor"] for i in schedule if i["status"] == "DUE")
    to_buyer = view["refund"]["refunded_to_buyer_minor"] or 0
    assert due_before - due_after + to_buyer == EXPECTED_REFUND_MINOR  # not a unit lost


def test_a_bank_transfer_waits_for_the_buyers_account_then_pays_it(stack, http):
    return_id = through_inspection(http, stack, payment_method="BANK_TRANSFER")
    waiting = wait_for_status(http, stack, return_id, {"AWAITING_BUYER_DETAILS"}, timeout=60)
    assert waiting["refund"]["method"] == "BANK_TRANSFER"
    buyer = as_buyer_of(http, stack, return_id)
    bad = http.post(
        f"{stack.url('returns')}/returns/{return_id}/bank-account",
        json={"holder": "E"},
        headers=buyer,
    )
    assert bad.status_code == 422
    assert {p["field"] for p in bad.json()["fields"]} >= {
        "refund_account.number",
        "refund_account.bank_code",
    }
    url = f"{stack.url('returns')}/returns/{return_id}/bank-account"
    given = http.post(url, json=ACCOUNT, headers=buyer)
    assert given.status_code == 202, given.text
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
    assert view["status"] == "COMPLETED", view["outcome"]
    assert view["request"]["refund_account"]["number"] == "****3000"
    [refund] = refunds_at(http, stack, "psp", return_id)
    assert refund["method"] == "BANK_TRANSFER" and refund["status"] == "succeeded"


def test_a_closed_card_account_is_refunded_as_store_credit_and_recorded_as_a_fallback(
    stack, http, psp_faults
):
    psp_faults(decline_rate=1.0, decline_codes=["account_closed"], declined_methods=["CARD"])
    return_id = through_inspection(http, stack)
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
    assert view["status"] == "COMPLETED", view["outcome"]
    refunds = refunds_at(http, stack, "psp", return_id)
    assert [(r["method"], r["status"]) for r in refunds] == [
        ("CARD", "declined"),
        ("STORE_CREDIT", "succeeded"),
    ]
    assert refunds[1]["amount_minor"] == EXPECTED_REFUND_MINOR
    assert view["refund"]["fallback"]["from"] == "CARD"
    assert view["refund"]["method"] == "STORE_CREDIT"
    assert "decline_fallback" in [r["rule_id"] for r in view["rules_fired"]]


def test_a_decline_a_person_must_judge_opens_a_ticket_and_moves_no_money(stack, http, psp_faults):
    psp_faults(decline_rate=1.0, decline_codes=["fraud_suspected"])
    return_id = through_inspection(http, stack)
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
    assert view["status"] == "NEEDS_ATTENTION", view["outcome"]
    assert view["outcome"]["ticket_id"]
    assert [r["status"] for r in refunds_at(http, stack, "psp", return_id)] == ["declined"]
