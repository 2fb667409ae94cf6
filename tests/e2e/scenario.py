"""Steps of the reverse loop as a test would take them, over HTTP."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from services.tools.local_stack.drawn_returns import delivered_at_ms, marketplace_order
from services.tools.local_stack.stack import STATION_TOKENS, LocalStack


def return_body(**changes: Any) -> dict[str, Any]:
    body = {
        "order_ref": f"ORD-{uuid.uuid4().hex[:8]}",
        # a buyer and address of its own: risk counts history per buyer and address, and one
        # test's empty parcels must not make another test's buyer a repeat fraudster
        "buyer_id": f"B-e2e-{uuid.uuid4().hex[:8]}",
        "seller_id": "S-e2e",
        "category": "apparel",
        "market": "DE",
        "reason_code": "WRONG_SIZE",
        "delivered_at": (datetime.now(UTC) - timedelta(days=3)).date().isoformat(),
        "payment_method": "CARD",
        "pickup_address": f"Musterstrasse {uuid.uuid4().hex[:6]}, Berlin",
        "lines": [
            {
                "sku": "SKU-E2E-1",
                "quantity": 2,
                "quantity_bought": 2,
                "order_line_id": "L1",
                "unit_price": {"amount_minor": 2599, "currency": "EUR"},
            },
            {
                "sku": "SKU-E2E-2",
                "quantity": 1,
                "quantity_bought": 3,
                "order_line_id": "L2",
                "unit_price": {"amount_minor": 1000, "currency": "EUR"},
            },
        ],
    }
    body.update(changes)
    return body


TERMINAL = {"COMPLETED", "REJECTED", "CANCELLED", "COMPENSATED", "NEEDS_ATTENTION"}

# WRONG_SIZE is buyer remorse: in DE the buyer pays the 4.95 EUR return shipping
# (deploy/policies/DE/market.yaml); grades A and B take nothing else off.
DE_RETURN_SHIPPING_MINOR = 495
EXPECTED_REFUND_MINOR = 2 * 2599 + 1000 - DE_RETURN_SHIPPING_MINOR


def place_order(http: httpx.Client, stack: LocalStack, body: dict[str, Any]) -> None:
    """The marketplace places and delivers the order a return body describes (the front
    door takes every fact from it); once per order_ref, the same order again is a no-op."""
    marketplace = stack.url("marketplace")
    order = marketplace_order(body)
    placed = http.post(f"{marketplace}/orders", json=order)
    assert placed.status_code in (200, 201), placed.text
    delivered = http.post(
        f"{marketplace}/orders/{order['order_ref']}/delivered",
        json={"delivered_at": delivered_at_ms(body)},
    )
    assert delivered.status_code in (200, 201), delivered.text


def signed_in(
    http: httpx.Client,
    stack: LocalStack,
    subject: str,
    signed_in_at_ms: int | None = None,
    role: str = "buyer",
) -> dict[str, str]:
    """The Authorization header of a buyer (or a support agent) who signed in at the
    marketplace, at `signed_in_at_ms` (now)."""
    kind = "buyers" if role == "buyer" else "support-agents"
    body = {} if signed_in_at_ms is None else {"signed_in_at": signed_in_at_ms}
    answer = http.post(f"{stack.url('marketplace')}/{kind}/{subject}/tokens", json=body)
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def as_buyer_of(http: httpx.Client, stack: LocalStack, return_id: str) -> dict[str, str]:
    """Signed in as the return's buyer (read from the coordinator's view)."""
    deadline = time.monotonic() + 30
    while (view := status(http, stack, return_id)) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert view is not None, f"{return_id} unknown to the coordinator"
    return signed_in(http, stack, view["request"]["buyer_id"])


def post_return(
    http: httpx.Client, stack: LocalStack, body: dict[str, Any], **options: Any
) -> httpx.Response:
    """POST /returns after the marketplace placed the body's order, signed in as its buyer
    (unless `headers` carry an Authorization of their own)."""
    place_order(http, stack, body)
    headers = dict(options.pop("headers", None) or {})
    if "Authorization" not in headers:
        headers |= signed_in(http, stack, body["buyer_id"])
    return http.post(f"{stack.url('returns')}/returns", json=body, headers=headers, **options)


def create_return(
    http: httpx.Client, stack: LocalStack, key: str | None = None, **changes: Any
) -> str:
    headers = {"Idempotency-Key": key or uuid.uuid4().hex}
    response = post_return(http, stack, return_body(**changes), headers=headers)
    assert response.status_code == 202, response.text
    return response.json()["return_id"]


def status(http: httpx.Client, stack: LocalStack, return_id: str) -> dict[str, Any] | None:
    response = http.get(f"{stack.url('coordinator')}/returns/{return_id}")
    return response.json() if response.status_code == 200 else None


def wait_for_status(
    http: httpx.Client, stack: LocalStack, return_id: str, wanted: set[str], timeout: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = status(http, stack, return_id)
        if seen and seen["status"] in wanted:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"{return_id} not in {wanted} after {timeout}s; last seen {seen}")


def scan(
    return_id: str,
    scan_id: str | None = None,
    station: str = "ST-1",
    token_station: str | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    body = {
        "scan_id": scan_id or f"SCAN-{uuid.uuid4().hex[:10]}",
        "return_id": return_id,
        "station_id": station,
        "inspector_id": "I-e2e",
        "items": [
            {
                "sku": "SKU-E2E-1",
                "serial": None,
                "grade": "A",
                "matches_order": True,
                "measured_weight_grams": 500,
                "expected_weight_grams": 510,
                "notes": "",
                "photo_refs": [],
            },
            {
                "sku": "SKU-E2E-1",
                "serial": None,
                "grade": "B",
                "matches_order": True,
                "measured_weight_grams": 505,
                "expected_weight_grams": 510,
                "notes": "box opened",
                "photo_refs": ["photo://1"],
            },
            {
                "sku": "SKU-E2E-2",
                "serial": "SN-1",
                "grade": "A",
                "matches_order": True,
                "measured_weight_grams": 200,
                "expected_weight_grams": None,
                "notes": "",
                "photo_refs": [],
            },
        ],
    }
    headers = {"Authorization": f"Bearer {STATION_TOKENS[token_station or station]}"}
    return body, headers


def set_partner_faults(http: httpx.Client, stack: LocalStack, partner: str, **plan: Any) -> None:
    """Set fault settings on a partner double (`carrier`, `psp`, `psp-b`)."""
    response = http.post(f"{stack.url(partner)}/admin/faults", json=plan)
    assert response.status_code == 200, response.text


def post_scan(http: httpx.Client, stack: LocalStack, body: dict, headers: dict) -> httpx.Response:
    return http.post(f"{stack.url('inspection')}/inspections", json=body, headers=headers)


def post_scan_when_ready(
    http: httpx.Client, stack: LocalStack, body: dict, headers: dict, timeout: float = 30.0
) -> httpx.Response:
    """The inspection service learns of a pickup from the stream; retry while it catches up."""
    deadline = time.monotonic() + timeout
    while True:
        response = post_scan(http, stack, body, headers)
        if response.status_code not in (404, 409) or time.monotonic() > deadline:
            return response
        time.sleep(0.2)
