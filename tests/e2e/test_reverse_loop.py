"""End to end: every service a separate process, a real broker, real partner servers."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter

import httpx

from services.tools.local_stack.demo import LoopDriver, psp_ledger, summarize
from tests.e2e.scenario import (
    EXPECTED_REFUND_MINOR,
    create_return,
    post_return,
    post_scan,
    post_scan_when_ready,
    return_body,
    scan,
    signed_in,
    wait_for_status,
)

FULL_PATH = [
    "REQUESTED",
    "PICKUP_PENDING",
    "AWAITING_INSPECTION",
    "INTAKE_PENDING",
    "REFUND_PENDING",
    "COMPLETED",
]


def _psp_refunds(http: httpx.Client, stack, return_id: str) -> list[dict]:
    response = http.get(f"{stack.url('psp')}/refunds", params={"return_id": return_id})
    return [r for r in response.json()["refunds"] if r["status"] in ("succeeded", "pending")]


def test_twenty_returns_complete_with_exactly_one_refund_each(stack, kafka_bootstrap, http):
    driver = LoopDriver(stack, kafka_bootstrap, returns=20, seed=7)
    started = time.monotonic()
    asyncio.run(driver.run(timeout_s=120))
    ledger = asyncio.run(psp_ledger(stack.url("psp"), stack.url("psp-b")))
    summary = summarize(driver, ledger, time.monotonic() - started)
    assert summary["completed"] == 20, [t.errors for t in driver.tracked if not t.terminal]
    exchanges = summary["exchanges_completed"]
    assert summary["refunds_at_psp"] == summary["refunds_expected"] == 20 - exchanges
    assert summary["duplicates_at_psp"] == 0
    assert summary["wrong_amounts"] == summary["wrong_methods"] == 0
    for tracked in driver.tracked:
        view = wait_for_status(http, stack, tracked.return_id, {"COMPLETED"}, timeout=5)
        statuses = [h["to"] for h in view["history"]]
        assert [s for s in statuses if s in FULL_PATH][:1] == ["REQUESTED"]
        assert statuses[-1] == "COMPLETED"
        assert view["liability"]["liable"] == tracked.expected_liable
        if tracked.expected_method == "EXCHANGE":
            assert view["outcome"]["resolution"] == "EXCHANGE" and view["refund"] is None
            continue
        assert view["refund"]["amount"]["amount_minor"] == tracked.expected_minor
        assert all(h["at"] > 0 and h["event_id"] for h in view["history"])


def test_status_shows_history_with_timestamps_and_the_refund(stack, http):
    return_id = create_return(http, stack)
    body, headers = scan(return_id)
    assert post_scan_when_ready(http, stack, body, headers).status_code == 202
    view = wait_for_status(http, stack, return_id, {"COMPLETED"})
    steps = [h["to"] for h in view["history"]]
    for expected in FULL_PATH:
        assert expected in steps
    timestamps = [h["at"] for h in view["history"]]
    assert timestamps == sorted(timestamps)
    assert view["refund"]["amount"] == {"amount_minor": EXPECTED_REFUND_MINOR, "currency": "EUR"}
    assert view["refund"]["provider_refund_id"]
    [refund] = _psp_refunds(http, stack, return_id)
    assert refund["amount_minor"] == EXPECTED_REFUND_MINOR


def test_duplicate_scan_returns_the_first_answer_and_records_one_inspection(stack, http):
    return_id = create_return(http, stack)
    body, headers = scan(return_id)
    first = post_scan_when_ready(http, stack, body, headers)
    assert first.status_code == 202, first.text
    second = post_scan(http, stack, body, headers)
    assert second.status_code == 202
    assert second.json() == first.json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    view = wait_for_status(http, stack, return_id, {"COMPLETED"})
    inspections = [h for h in view["history"] if h["event_type"] == "InspectionRecorded"]
    assert len(inspections) == 1
    assert len(_psp_refunds(http, stack, return_id)) == 1


def test_scan_for_an_unknown_return_is_404(stack, http):
    body, headers = scan(f"RMA-NOPE-{uuid.uuid4().hex[:6]}")
    response = post_scan(http, stack, body, headers)
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_return"


def test_scan_for_a_return_awaiting_pickup_is_409_with_its_state(stack, http):
    return_id = create_return(http, stack)
    body, headers = scan(return_id)
    deadline = time.monotonic() + 10
    response = post_scan(http, stack, body, headers)
    while response.status_code == 404 and time.monotonic() < deadline:  # view catching up
        time.sleep(0.05)
        response = post_scan(http, stack, body, headers)
    assert response.status_code == 409, response.text
    # the view has seen the request (REQUESTED) or its acceptance (AWAITING_PICKUP)
    assert response.json()["state"] in {"REQUESTED", "AWAITING_PICKUP"}
    assert post_scan_when_ready(http, stack, body, headers).status_code == 202
    wait_for_status(http, stack, return_id, {"COMPLETED"})


def test_bad_json_is_400_on_every_api(stack, http):
    _, headers = scan("RMA-X")
    for url, extra in (
        (f"{stack.url('returns')}/returns", signed_in(http, stack, "B-e2e-bad-json")),
        (f"{stack.url('inspection')}/inspections", headers),
    ):
        response = http.post(
            url, content=b"{not json", headers={**extra, "Content-Type": "application/json"}
        )
        assert response.status_code == 400, url
        assert response.json()["error"] == "malformed_json"


def test_invalid_return_request_is_422_naming_the_field(stack, http):
    body = return_body(
        lines=[
            {
                "sku": "X",
                "quantity": 3,
                "quantity_bought": 1,
                "unit_price": {"amount_minor": 10.5, "currency": "EUR"},
            }
        ]
    )
    buyer = signed_in(http, stack, body["buyer_id"])
    response = http.post(f"{stack.url('returns')}/returns", json=body, headers=buyer)
    assert response.status_code == 422
    fields = {f["field"] for f in response.json()["fields"]}
    assert "lines[0].unit_price.amount_minor" in fields


def test_scanner_without_or_with_a_wrong_token_is_401(stack, http):
    body, _ = scan("RMA-X")
    url = f"{stack.url('inspection')}/inspections"
    assert http.post(url, json=body).status_code == 401
    assert (
        http.post(
            url, json=body, headers={"Authorization": "Bearer wrong-token-000000"}
        ).status_code
        == 401
    )


def test_a_token_used_for_another_station_is_403(stack, http):
    body, headers = scan("RMA-X", station="ST-2", token_station="ST-1")
    response = post_scan(http, stack, body, headers)
    assert response.status_code == 403
    assert response.json()["error"] == "wrong_station"


def test_unsigned_or_badly_signed_carrier_callback_is_401(stack, http):
    url = f"{stack.url('pickup')}/carrier/callbacks"
    callback = {
        "callback_id": "cb-1",
        "return_id": "RMA-X",
        "booking_id": "BK",
        "tracking_number": "T",
        "status": "collected",
        "occurred_at": 1,
        "attempt_no": 1,
    }
    assert http.post(url, json=callback).status_code == 401
    forged = {"X-Carrier-Timestamp": str(int(time.time())), "X-Carrier-Signature": "sha256=00"}
    assert http.post(url, json=callback, headers=forged).status_code == 401
    stale = {"X-Carrier-Timestamp": "1000", "X-Carrier-Signature": "sha256=00"}
    response = http.post(url, json=callback, headers=stale)
    assert response.status_code == 401 and "stale" in response.json()["detail"]


def test_idempotency_key_same_body_same_return_different_body_409(stack, http):
    key = f"e2e-{uuid.uuid4().hex}"
    body = return_body()
    url = f"{stack.url('returns')}/returns"
    first = post_return(http, stack, body, headers={"Idempotency-Key": key})
    buyer = signed_in(http, stack, body["buyer_id"])
    again = http.post(url, json=body, headers={"Idempotency-Key": key, **buyer})
    assert first.status_code == again.status_code == 202
    assert again.json()["return_id"] == first.json()["return_id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    other_body = {**body, "reason_code": "DEFECTIVE"}
    other = http.post(url, json=other_body, headers={"Idempotency-Key": key, **buyer})
    assert other.status_code == 409
    assert other.json()["error"] == "idempotency_key_reused"


def test_policy_rejection_is_422_and_ends_the_saga(stack, http):
    response = post_return(http, stack, return_body(category="perishables"))
    assert response.status_code == 422
    assert response.json()["rejection_code"] == "NON_RETURNABLE_CATEGORY"
    view = wait_for_status(http, stack, response.json()["return_id"], {"REJECTED"})
    assert view["outcome"]["outcome"] == "REJECTED"


def test_unknown_return_status_is_404(stack, http):
    assert http.get(f"{stack.url('coordinator')}/returns/RMA-NOPE").status_code == 404


def test_a_coordinator_killed_mid_run_loses_no_saga(stack, kafka_bootstrap, http):
    driver = LoopDriver(stack, kafka_bootstrap, returns=15, seed=11)

    async def run_with_a_crash() -> None:
        run = asyncio.create_task(driver.run(timeout_s=150))
        while sum(t.collected for t in driver.tracked) < 5 and not run.done():
            await asyncio.sleep(0.1)
        await asyncio.to_thread(stack.restart, "coordinator", True)
        await run

    asyncio.run(run_with_a_crash())
    assert stack.processes["coordinator"].kills >= 1
    assert sum(t.terminal == "ReturnCompleted" for t in driver.tracked) == 15
    ledger = asyncio.run(psp_ledger(stack.url("psp"), stack.url("psp-b")))
    exchanges = {t.return_id for t in driver.tracked if t.expected_method == "EXCHANGE"}
    ours = {t.return_id for t in driver.tracked} - exchanges
    paid = Counter(
        r["return_id"] for r in ledger if r["return_id"] in ours and r["status"] == "succeeded"
    )
    assert set(paid) == ours and set(paid.values()) == {1}
    for return_id in exchanges:  # an exchange pays no money: one replacement order instead
        orders = http.get(
            f"{stack.url('marketplace')}/replacement-orders", params={"return_id": return_id}
        ).json()["replacement_orders"]
        assert [o["status"] for o in orders] == ["placed"]


def test_every_service_logs_json_lines_carrying_return_and_event_ids(stack):
    for name in ("returns", "coordinator", "pickup", "inspection", "warehouse-intake", "refund"):
        lines = stack.processes[name].log_path.read_text().splitlines()
        parsed = []
        for line in lines:
            try:
                parsed.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        assert parsed, name
        assert any(p.get("return_id") and p.get("event_id") for p in parsed), name
        assert all(p.get("service") == name for p in parsed if "service" in p), name
