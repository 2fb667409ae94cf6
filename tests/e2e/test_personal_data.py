"""A buyer's personal data through real processes: never in any process's log, masked in
the coordinator's view, and erased from the return's saga on the buyer's request (ids
kept)."""

from __future__ import annotations

import time
import uuid

from tests.e2e.scenario import (
    TERMINAL,
    as_buyer_of,
    create_return,
    post_scan_when_ready,
    scan,
    signed_in,
    status,
    wait_for_status,
)


def test_personal_data_stays_out_of_logs_and_is_erased_on_request(stack, http):
    street = f"Geheimweg {uuid.uuid4().hex[:8]}"
    holder = f"Erika Geheim{uuid.uuid4().hex[:6]}"
    number = "DE89370400440532013000"
    return_id = create_return(
        http, stack, payment_method="BANK_TRANSFER", pickup_address=f"{street}, 10115 Berlin"
    )
    body, headers = scan(return_id)
    assert post_scan_when_ready(http, stack, body, headers, timeout=60).status_code == 202
    wait_for_status(http, stack, return_id, {"AWAITING_BUYER_DETAILS"}, timeout=60)
    account = {"holder": holder, "number": number, "bank_code": "COBADEFFXXX"}
    url = f"{stack.url('returns')}/returns/{return_id}/bank-account"
    given = http.post(url, json=account, headers=as_buyer_of(http, stack, return_id))
    assert given.status_code == 202, given.text
    view = wait_for_status(http, stack, return_id, TERMINAL, timeout=90)
    assert view["status"] == "COMPLETED", view["outcome"]
    shown = view["request"]
    assert shown["pickup_address"] == "•••, 10115 Berlin"
    assert (shown["refund_account"]["number"], shown["refund_account"]["holder"]) == (
        "****3000",
        "E•••",
    )
    buyer_id = shown["buyer_id"]
    erase = http.post(
        f"{stack.url('returns')}/buyers/{buyer_id}/erasure",
        headers=signed_in(http, stack, buyer_id),
    )
    assert erase.status_code == 200, erase.text
    assert erase.json()["returns"] == [return_id]
    deadline = time.monotonic() + 30
    while (view := status(http, stack, return_id))["request"]["pickup_address"] != "[erased]":
        assert time.monotonic() < deadline, view["request"]
        time.sleep(0.3)
    assert view["request"]["refund_account"]["holder"] == "[erased]"
    assert view["request"]["buyer_id"] == buyer_id and view["status"] == "COMPLETED"
    logged = {
        path.name: path.read_text(errors="replace")
        for path in (stack.run_dir / "logs").glob("*.log")
    }
    assert len(logged) >= 10
    for secret in (street, holder, number):
        assert not [name for name, text in logged.items() if secret in text], secret
