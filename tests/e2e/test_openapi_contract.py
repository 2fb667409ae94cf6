"""Real answers of the running services match the OpenAPI documents they serve.

Each request is built to produce one documented status; its JSON body is validated against
the schema the running service's own `/openapi.json` gives for that path, method and status,
and the document served must be the one kept in the repo.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from services.eventing.webhook_signature import CARRIER_SIGNATURE, PSP_SIGNATURE
from services.tools.local_stack.stack import (
    CARRIER_SECRET,
    FINANCE_TOKEN,
    OPERATOR_TOKENS,
    PSP_WEBHOOK_SECRET,
)
from tests.e2e.scenario import (
    create_return,
    place_order,
    post_return,
    post_scan,
    post_scan_when_ready,
    return_body,
    scan,
    signed_in,
    wait_for_status,
)
from tests.support.openapi_services import SERVICES

ROOT = Path(__file__).resolve().parents[2]
DOC_URI = "urn:boomerang:openapi"


def process(service: str) -> str:
    """The running process of a service package (warehouse_intake → warehouse-intake)."""
    return service.replace("_", "-")


OVER_LIMIT = {"padding": "x" * (256 * 1024 + 1)}  # over MAX_BODY_BYTES, under aiohttp's 1 MiB


@pytest.fixture(scope="module")
def documents(stack) -> dict[str, dict[str, Any]]:
    served = {}
    with httpx.Client(timeout=10.0) as client:
        for service in SERVICES:
            response = client.get(f"{stack.url(process(service))}/openapi.json")
            assert response.status_code == 200, (service, response.text)
            assert response.headers["content-type"].startswith("application/json")
            served[service] = response.json()
    return served


class Contract:
    """Checks answers against one service's served document."""

    def __init__(self, service: str, document: dict[str, Any]) -> None:
        self.service = service
        self.document = document
        self.registry = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(document))

    def check(
        self, response: httpx.Response, path: str, method: str, status: int
    ) -> dict[str, Any]:
        """`response` has `status` and a JSON body valid for path+method+status."""
        where = f"{self.service}: {method.upper()} {path}"
        assert response.status_code == status, (where, response.status_code, response.text)
        documented = self.document["paths"][path][method.lower()]["responses"]
        assert str(status) in documented, (where, status)
        assert response.headers["content-type"].startswith("application/json"), where
        for header in ("Idempotent-Replayed",):
            if header in response.headers:
                assert header in documented[str(status)].get("headers", {}), (where, header)
        escaped = path.replace("~", "~0").replace("/", "~1")
        pointer = f"/paths/{escaped}/{method.lower()}/responses/{status}/content/application~1json"
        validator = Draft202012Validator(
            {"$ref": f"{DOC_URI}#{pointer}/schema"},
            registry=self.registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        body = response.json()
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        assert not errors, f"{where} {status}: " + "; ".join(
            f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors
        )
        return body


@pytest.fixture(scope="module")
def contracts(documents) -> dict[str, Contract]:
    return {service: Contract(service, documents[service]) for service in SERVICES}


@pytest.fixture(scope="module")
def client() -> httpx.Client:
    with httpx.Client(timeout=15.0) as http:
        yield http


@pytest.fixture(scope="module")
def rejected_return(stack, client) -> str:
    """A return the policy rejected (perishables are not returnable)."""
    response = post_return(
        client,
        stack,
        return_body(category="perishables"),
        headers={"Idempotency-Key": f"contract-rejected-{uuid.uuid4().hex}"},
    )
    assert response.status_code == 422, response.text
    return response.json()["return_id"]


@pytest.fixture(scope="module")
def inspected_return(stack, client) -> tuple[str, dict[str, Any], dict[str, str], httpx.Response]:
    """A return collected by the carrier double and scanned once (202)."""
    return_id = create_return(client, stack)
    body, headers = scan(return_id)
    first = post_scan_when_ready(client, stack, body, headers)
    return return_id, body, headers, first


# ---------------------------------------------------------------- every service


@pytest.mark.parametrize("service", SERVICES)
def test_served_document_is_the_one_in_the_repo(service, documents):
    kept = json.loads((ROOT / "services" / service / "openapi.json").read_text(encoding="utf-8"))
    assert documents[service] == kept


@pytest.mark.parametrize("service", SERVICES)
def test_health_and_openapi_pages_match(service, stack, client, contracts):
    contract = contracts[service]
    health = contract.check(
        client.get(f"{stack.url(process(service))}/health"), "/health", "get", 200
    )
    assert health["service"] == process(service)
    contract.check(
        client.get(f"{stack.url(process(service))}/openapi.json"), "/openapi.json", "get", 200
    )


# ---------------------------------------------------------------- returns


def test_returns_answers_match_the_document(stack, client, contracts, rejected_return):
    contract, url = contracts["returns"], f"{stack.url('returns')}/returns"
    key = f"contract-{uuid.uuid4().hex}"
    body = return_body()
    place_order(client, stack, body)
    buyer = signed_in(client, stack, body["buyer_id"])

    anonymous = contract.check(client.post(url, json=body), "/returns", "post", 401)
    assert anonymous["error"] == "missing_token"
    intruder = signed_in(client, stack, "B-contract-intruder")
    foreign = contract.check(client.post(url, json=body, headers=intruder), "/returns", "post", 403)
    assert foreign["error"] == "not_your_order"

    accepted = contract.check(
        client.post(url, json=body, headers={"Idempotency-Key": key, **buyer}),
        "/returns",
        "post",
        202,
    )
    replay = client.post(url, json=body, headers={"Idempotency-Key": key, **buyer})
    assert contract.check(replay, "/returns", "post", 202) == accepted
    assert replay.headers["Idempotent-Replayed"] == "true"

    conflict = contract.check(
        client.post(url, json=return_body(), headers={"Idempotency-Key": key, **buyer}),
        "/returns",
        "post",
        409,
    )
    assert conflict["error"] == "idempotency_key_reused"
    assert conflict["return_id"] == accepted["return_id"]

    for raw in (b"{not json", b"[1, 2]"):
        answer = client.post(
            url, content=raw, headers={"Content-Type": "application/json", **buyer}
        )
        assert contract.check(answer, "/returns", "post", 400)["error"] == "malformed_json"
    bad_key = client.post(url, json=body, headers={"Idempotency-Key": "k" * 129, **buyer})
    assert contract.check(bad_key, "/returns", "post", 400)["error"] == "bad_idempotency_key"

    too_large = contract.check(
        client.post(url, json=OVER_LIMIT, headers=buyer), "/returns", "post", 413
    )
    assert too_large["error"] == "body_too_large"

    invalid_body = return_body(buyer_id="", payment_method="CASH")
    invalid_body["lines"][0]["unit_price"] = {"amount_minor": 25.99, "currency": "EUR"}
    invalid = contract.check(
        client.post(url, json=invalid_body, headers=buyer), "/returns", "post", 422
    )
    assert invalid["error"] == "invalid_request"
    assert {f["field"] for f in invalid["fields"]} == {
        "buyer_id",
        "payment_method",
        "lines[0].unit_price.amount_minor",
    }

    rejected_key = f"contract-{uuid.uuid4().hex}"
    rejected_body = return_body(category="perishables")
    place_order(client, stack, rejected_body)
    rejecting = {
        "Idempotency-Key": rejected_key,
        **signed_in(client, stack, rejected_body["buyer_id"]),
    }
    rejected = contract.check(
        client.post(url, json=rejected_body, headers=rejecting),
        "/returns",
        "post",
        422,
    )
    assert rejected["error"] == "policy_rejected"
    assert rejected["rejection_code"] == "NON_RETURNABLE_CATEGORY"
    replayed = client.post(url, json=rejected_body, headers=rejecting)
    assert contract.check(replayed, "/returns", "post", 422) == rejected
    assert replayed.headers["Idempotent-Replayed"] == "true"


# ---------------------------------------------------------------- inspection


def test_inspection_answers_match_the_document(
    stack, client, contracts, inspected_return, rejected_return
):
    contract, url = contracts["inspection"], f"{stack.url('inspection')}/inspections"
    return_id, body, headers, first = inspected_return

    recorded = contract.check(first, "/inspections", "post", 202)
    assert (recorded["return_id"], recorded["status"]) == (return_id, "recorded")
    again = post_scan(client, stack, body, headers)
    assert contract.check(again, "/inspections", "post", 202) == recorded
    assert again.headers["Idempotent-Replayed"] == "true"

    second_body, _ = scan(return_id)  # another scan_id for an inspected return
    conflict = contract.check(
        post_scan(client, stack, second_body, headers), "/inspections", "post", 409
    )
    assert (conflict["return_id"], conflict["state"]) == (return_id, "INSPECTED")

    for auth in ({}, {"Authorization": "Bearer not-a-station-token"}):
        answer = client.post(url, json=body, headers=auth)
        assert contract.check(answer, "/inspections", "post", 401)["error"] == "unauthenticated"

    malformed = client.post(url, content=b"{", headers=headers)
    contract.check(malformed, "/inspections", "post", 400)
    contract.check(client.post(url, json=OVER_LIMIT, headers=headers), "/inspections", "post", 413)
    invalid_body, _ = scan(return_id)
    invalid_body["items"][0] |= {"grade": "E", "measured_weight_grams": -1}
    invalid = contract.check(
        client.post(url, json=invalid_body, headers=headers), "/inspections", "post", 422
    )
    assert {f["field"] for f in invalid["fields"]} == {
        "items[0].grade",
        "items[0].measured_weight_grams",
    }

    wrong_body, wrong_headers = scan(return_id, station="ST-1", token_station="ST-2")
    wrong = client.post(url, json=wrong_body, headers=wrong_headers)
    assert contract.check(wrong, "/inspections", "post", 403)["error"] == "wrong_station"

    unknown_body, _ = scan(f"RMA-CONTRACT-UNKNOWN-{uuid.uuid4().hex[:8]}")
    unknown = client.post(url, json=unknown_body, headers=headers)
    assert contract.check(unknown, "/inspections", "post", 404)["error"] == "unknown_return"

    # the rejected return is closed once the service has read its events
    closed_body, _ = scan(rejected_return)
    deadline = time.monotonic() + 15
    while (answer := post_scan(client, stack, closed_body, headers)).status_code == 404:
        assert time.monotonic() < deadline, "the inspection service never saw the return"
        time.sleep(0.2)
    assert contract.check(answer, "/inspections", "post", 409)["state"] == "CLOSED"


# ---------------------------------------------------------------- pickup


def signed(body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        **CARRIER_SIGNATURE.signature_headers(CARRIER_SECRET.encode(), stamp, body),
    }


def test_pickup_answers_match_the_document(stack, client, contracts, rejected_return):
    contract, url = contracts["pickup"], f"{stack.url('pickup')}/carrier/callbacks"
    # callbacks for a rejected (terminal) return: the saga records them as ignored
    callback = {
        "callback_id": f"contract-{uuid.uuid4()}",
        "booking_id": "BK-CONTRACT",
        "return_id": rejected_return,
        "tracking_number": "TRK-CONTRACT",
        "status": "attempt_failed",
        "reason": "BUYER_ABSENT",
        "attempt_no": 1,
        "occurred_at": int(time.time() * 1000),
        "carrier_noted_damage": False,
        "parcel_weight_grams": None,
    }
    for changes in ({}, {"status": "collected", "reason": None, "parcel_weight_grams": 900}):
        raw = json.dumps(callback | changes | {"callback_id": str(uuid.uuid4())}).encode()
        accepted = contract.check(
            client.post(url, content=raw, headers=signed(raw)), "/carrier/callbacks", "post", 202
        )
        assert accepted["accepted"] is True

    raw = json.dumps(callback).encode()
    for headers in (
        {"Content-Type": "application/json"},
        signed(raw, int(time.time()) - 3600),
        signed(raw + b" "),
    ):
        refused = client.post(url, content=raw, headers=headers)
        assert (
            contract.check(refused, "/carrier/callbacks", "post", 401)["error"] == "bad_signature"
        )

    for raw, status in (
        (b"{", 400),
        (b"[]", 400),
        (json.dumps(OVER_LIMIT).encode(), 413),
        (json.dumps(callback | {"reason": None, "attempt_no": 0}).encode(), 422),
    ):
        contract.check(
            client.post(url, content=raw, headers=signed(raw)), "/carrier/callbacks", "post", status
        )


# ---------------------------------------------------------------- coordinator


def test_coordinator_answers_match_the_document(
    stack, client, contracts, inspected_return, rejected_return
):
    contract, base = contracts["coordinator"], f"{stack.url('coordinator')}/returns"

    missing = client.get(f"{base}/RMA-CONTRACT-UNKNOWN-{uuid.uuid4().hex[:8]}")
    assert contract.check(missing, "/returns/{return_id}", "get", 404)["error"] == "not_found"

    wait_for_status(client, stack, rejected_return, {"REJECTED"}, timeout=15)
    rejected = contract.check(
        client.get(f"{base}/{rejected_return}"), "/returns/{return_id}", "get", 200
    )
    assert rejected["outcome"]["outcome"] == "REJECTED"

    return_id = inspected_return[0]
    wait_for_status(client, stack, return_id, {"COMPLETED"}, timeout=30)
    completed = contract.check(
        client.get(f"{base}/{return_id}"), "/returns/{return_id}", "get", 200
    )
    assert all(completed[part] for part in ("request", "pickup", "inspection", "intake", "refund"))

    listing = contract.check(
        client.get(base, params={"status": "REJECTED"}), "/returns", "get", 200
    )
    assert rejected_return in listing["return_ids"]
    everything = contract.check(client.get(base), "/returns", "get", 200)
    assert everything["return_ids"] == [] and everything["counts"]["COMPLETED"] >= 1


# ---------------------------------------------------------------- refund


def psp_signed(body: bytes, secret: str = PSP_WEBHOOK_SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        **PSP_SIGNATURE.signature_headers(secret.encode(), int(time.time()), body),
    }


def test_refund_answers_match_the_document(stack, client, contracts, inspected_return):
    contract, base = contracts["refund"], stack.url("refund")
    return_id = inspected_return[0]
    view = wait_for_status(client, stack, return_id, {"COMPLETED"}, timeout=30)
    order_ref = view["request"]["order_ref"]
    ledger = contract.check(
        client.get(f"{base}/orders/{order_ref}/refunds"), "/orders/{order_ref}/refunds", "get", 200
    )
    assert return_id in [r["return_id"] for r in ledger["live_returns"]]
    unknown = client.get(f"{base}/orders/ORD-CONTRACT-{uuid.uuid4().hex[:8]}/refunds")
    assert (
        contract.check(unknown, "/orders/{order_ref}/refunds", "get", 404)["error"] == "not_found"
    )

    # a settlement of another refund of a finished return: the saga records it as ignored
    hook = {
        "webhook_id": f"contract-{uuid.uuid4()}",
        "type": "refund.settled",
        "provider": "psp",
        "occurred_at": int(time.time() * 1000),
        "refund": {
            "refund_id": "RF-CONTRACT",
            "return_id": return_id,
            "amount_minor": 100,
            "currency": "EUR",
            "method": "CARD",
            "status": "succeeded",
        },
    }
    url = f"{base}/webhooks/psp"
    raw = json.dumps(hook).encode()
    accepted = contract.check(
        client.post(url, content=raw, headers=psp_signed(raw)), "/webhooks/psp", "post", 202
    )
    assert accepted["accepted"] is True
    for headers in ({"Content-Type": "application/json"}, psp_signed(raw, "wrong-secret")):
        refused = client.post(url, content=raw, headers=headers)
        assert contract.check(refused, "/webhooks/psp", "post", 401)["error"] == "bad_signature"
    stranger = json.dumps(hook | {"provider": "psp-unknown"}).encode()
    refused = client.post(url, content=stranger, headers=psp_signed(stranger))
    assert contract.check(refused, "/webhooks/psp", "post", 401)["error"] == "unknown_provider"
    for raw, status in (
        (b"{", 400),
        (b"[]", 400),
        (json.dumps(OVER_LIMIT).encode(), 413),
        (json.dumps(hook | {"type": "refund.failed"}).encode(), 422),
    ):
        contract.check(
            client.post(url, content=raw, headers=psp_signed(raw)), "/webhooks/psp", "post", status
        )


def test_warehouse_intake_answers_match_the_document(stack, client, contracts, inspected_return):
    contract, url = contracts["warehouse_intake"], f"{stack.url('warehouse-intake')}/ledger"
    wait_for_status(client, stack, inspected_return[0], {"COMPLETED"}, timeout=30)
    whole = contract.check(client.get(url), "/ledger", "get", 200)
    assert whole["units_on_hand"] >= 1
    one = contract.check(client.get(url, params={"sku": "SKU-E2E-1"}), "/ledger", "get", 200)
    assert {entry["sku"] for entry in one["entries"]} == {"SKU-E2E-1"}


def test_notifications_answers_match_the_document(stack, client, contracts, inspected_return):
    contract, base = contracts["notifications"], stack.url("notifications")
    return_id = inspected_return[0]
    path = "/returns/{return_id}/notifications"
    deadline = time.monotonic() + 30
    while (answer := client.get(f"{base}/returns/{return_id}/notifications")).status_code != 200:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.5)
    kept = contract.check(answer, path, "get", 200)
    assert kept["return_id"] == return_id and kept["recipients_known"]
    unknown = client.get(f"{base}/returns/RMA-NONE/notifications")
    assert contract.check(unknown, path, "get", 404)["error"] == "unknown_return"


# ---------------------------------------------------------------- the HTTP layer's own limit


def test_a_body_over_one_mebibyte_is_a_413_too(stack, client, contracts):
    huge = {"padding": "x" * (1024 * 1024 + 1)}
    answer = client.post(f"{stack.url('returns')}/returns", json=huge)
    contracts["returns"].check(answer, "/returns", "post", 413)


def test_settlement_answers_match_the_document(stack, client, contracts):
    contract, base = contracts["settlement"], stack.url("settlement")
    finance = {"Authorization": f"Bearer {FINANCE_TOKEN}"}
    issued = client.post(f"{stack.url('marketplace')}/sellers/S-contract/tokens")
    assert issued.status_code == 201, issued.text
    seller = {"Authorization": f"Bearer {issued.json()['token']}"}

    def get(path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return client.get(f"{base}{path}", headers=headers or {})

    def post(path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return client.post(f"{base}{path}", headers=headers or {})

    balances = contract.check(get("/ledger/balances", finance), "/ledger/balances", "get", 200)
    assert balances["ledger_balanced"] is True
    contract.check(get("/ledger/balances"), "/ledger/balances", "get", 401)
    contract.check(get("/ledger/balances", seller), "/ledger/balances", "get", 403)
    own = "/sellers/{seller_id}/statements"
    contract.check(get("/sellers/S-contract/statements", seller), own, "get", 200)
    contract.check(get("/sellers/S-other/statements", seller), own, "get", 403)
    one = "/sellers/{seller_id}/statements/{cycle_id}"
    contract.check(get("/sellers/S-contract/statements/DE-00010", seller), one, "get", 404)
    contract.check(
        get("/sellers/S-contract/statements/DE-00010/notification", seller),
        f"{one}/notification",
        "get",
        404,
    )
    current = contract.check(get("/cycles/DE/current"), "/cycles/{market}/current", "get", 200)
    number = current["number"]
    draft = "/cycles/{market}/{number}/draft"
    contract.check(get(f"/cycles/DE/{number}/draft", finance), draft, "get", 200)
    contract.check(get("/cycles/DE/x/draft", finance), draft, "get", 404)  # names no cycle
    contract.check(get(f"/cycles/DE/{number}/draft", seller), draft, "get", 403)
    close = "/cycles/{market}/{number}/close"
    contract.check(post(f"/cycles/DE/{number}/close", finance), close, "post", 409)
    contract.check(post("/cycles/DE/x/close", finance), close, "post", 404)
    contract.check(post("/cycles/DE/10/close", finance), close, "post", 200)  # 2024: empty
    contract.check(post("/cycles/DE/10/close"), close, "post", 401)
    contract.check(get("/statements/DE-00010", finance), "/statements/{cycle_id}", "get", 200)
    contract.check(get("/statements/DE-00010"), "/statements/{cycle_id}", "get", 401)


# ---------------------------------------------------------------- ops (the dashboard's JSON)


def test_ops_answers_match_the_document(stack, client, contracts, inspected_return):
    contract, url = contracts["ops"], f"{stack.url('ops')}/dashboard/api"
    bearer = {"Authorization": f"Bearer {OPERATOR_TOKENS['operator-1']}"}
    return_id = inspected_return[0]
    wait_for_status(client, stack, return_id, {"COMPLETED"})
    for path, route in (
        ("/kpis", "/dashboard/api/kpis"),
        ("/reviews", "/dashboard/api/reviews"),
        ("/dead-letters", "/dashboard/api/dead-letters"),
        ("/lag", "/dashboard/api/lag"),
        (f"/returns/{return_id}", "/dashboard/api/returns/{return_id}"),
    ):
        contract.check(client.get(url + path, headers=bearer), route, "get", 200)
        contract.check(client.get(url + path), route, "get", 401)
    timeline = "/dashboard/api/returns/{return_id}"
    contract.check(client.get(f"{url}/returns/RMA-NONE", headers=bearer), timeline, "get", 404)
    contract.check(client.get(f"{url}/returns/%20bad", headers=bearer), timeline, "get", 404)
    static = client.get(f"{stack.url('ops')}/dashboard/static/nothing.js")
    contract.check(static, "/dashboard/static/{name}", "get", 404)
