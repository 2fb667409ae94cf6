"""The OpenAPI 3.1 documents in services/<service>/openapi.json: well formed, every `$ref`
resolves, every schema is valid JSON Schema 2020-12, every example matches its schema, and
the bodies the pure code builds (errors, answers, the saga's status view) match them too."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from services.decisions import saga
from services.decisions.money import CURRENCY_EXPONENTS
from services.decisions.refunds import order_refund_ledger
from services.decisions.risk.review_cases import reason_is_given
from services.decisions.saga import stored as stored_saga
from services.engine.web import add_openapi_page
from services.eventing.openapi_docs import load_openapi_document
from services.eventing.request_fields import ApiError, parse_json_object
from services.eventing.webhook_signature import SignatureError, verify
from services.inspection import return_tracking
from services.inspection.scan_request import GRADES, parse_scan
from services.inspection.station_auth import authenticate, authorize_station
from services.pickup.callback_parsing import FAILURE_REASONS, STATUSES, callback_event
from services.refund.webhook_parsing import webhook_event
from services.returns.handlers import answer_for, decision_events
from services.returns.return_request import (
    DISPUTE_REASONS,
    PAYMENT_METHODS,
    check_idempotency_key,
    parse_return_claim,
)
from services.tools.local_stack.drawn_returns import request_of
from tests.support.openapi_services import SERVICES
from tests.support.policies import deployed_rules
from tests.support.return_events import event

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
DOC_URI = "urn:boomerang:openapi"


def load(service: str) -> dict[str, Any]:
    return json.loads((ROOT / "services" / service / "openapi.json").read_text(encoding="utf-8"))


DOCS = {service: load(service) for service in SERVICES}


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def validator(document: dict[str, Any], pointer: str) -> Draft202012Validator:
    """A validator for the schema at `pointer` (e.g. "/components/schemas/X") with the whole
    document as the resource its `$ref`s resolve in."""
    registry = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(document))
    return Draft202012Validator(
        {"$ref": f"{DOC_URI}#{pointer}"},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def response_pointer(path: str, method: str, status: int | str) -> str:
    return f"/paths/{escape(path)}/{method}/responses/{status}/content/application~1json/schema"


def assert_valid(service: str, pointer: str, body: Any) -> None:
    errors = sorted(validator(DOCS[service], pointer).iter_errors(body), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def assert_response(service: str, path: str, method: str, status: int, body: Any) -> None:
    assert str(status) in DOCS[service]["paths"][path][method]["responses"], status
    assert_valid(service, response_pointer(path, method, status), body)


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def walk(value: Any, pointer: str = "") -> Iterator[tuple[str, Any]]:
    yield pointer, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, f"{pointer}/{escape(str(key))}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, f"{pointer}/{index}")


def resolve_pointer(document: dict[str, Any], pointer: str) -> Any:
    value: Any = document
    for token in pointer.lstrip("/").split("/") if pointer else []:
        token = token.replace("~1", "/").replace("~0", "~")
        value = value[int(token)] if isinstance(value, list) else value[token]
    return value


def schema_locations(document: dict[str, Any]) -> Iterator[str]:
    """Pointers of every schema object the document holds (components, parameters, bodies,
    headers)."""
    for name in document["components"]["schemas"]:
        yield f"/components/schemas/{escape(name)}"
    for path, method, operation in operations(document):
        base = f"/paths/{escape(path)}/{method}"
        for index, _ in enumerate(operation.get("parameters", [])):
            yield f"{base}/parameters/{index}/schema"
        for media in operation.get("requestBody", {}).get("content", {}):
            yield f"{base}/requestBody/content/{escape(media)}/schema"
        for status, answer in operation["responses"].items():
            for media in answer.get("content", {}):
                yield f"{base}/responses/{status}/content/{escape(media)}/schema"
            for header in answer.get("headers", {}):
                yield f"{base}/responses/{status}/headers/{escape(header)}/schema"


# ---------------------------------------------------------------- structure


@pytest.mark.parametrize("service", SERVICES)
def test_links_name_operations_and_fill_their_path_parameters(service):
    """The stateful fuzzing follows these links: each names an operation of the document
    and fills every path parameter it has from the answer or the request."""
    document = DOCS[service]
    by_id = {op["operationId"]: (path, op) for path, _, op in operations(document)}
    for path, method, operation in operations(document):
        for status, answer in operation["responses"].items():
            for name, link in answer.get("links", {}).items():
                where = (f"{method.upper()} {path}", status, name)
                assert link["operationId"] in by_id, where
                _, target = by_id[link["operationId"]]
                wanted = {p["name"] for p in target.get("parameters", []) if p["in"] == "path"}
                assert wanted <= set(link["parameters"]), where
                for expression in link["parameters"].values():
                    assert re.fullmatch(r"\$(response\.body#/\S+|request\.path\.\w+)", expression)


@pytest.mark.parametrize("service", SERVICES)
def test_the_parameter_checks_refusals_are_documented(service):
    """Every operation with parameters documents the answer `documented_parameters` gives
    when one breaks its schema: 404 for a path parameter, 400 for a query one."""
    document = DOCS[service]
    for path, method, operation in operations(document):
        locations = {p["in"] for p in operation.get("parameters", [])}
        for status, kinds in ((404, {"path"}), (400, {"query"})):
            if not locations & kinds:
                continue
            name = next(p["name"] for p in operation["parameters"] if p["in"] in kinds)
            where = f"{'path' if status == 404 else 'query'}.{name}"
            code = "not_found" if status == 404 else "invalid_parameter"
            body = {
                "error": code,
                "detail": f"{where}: does not match '^x$'",
                "fields": [{"field": where, "problem": "does not match '^x$'"}],
            }
            assert_response(service, path, method, status, body)


@pytest.mark.parametrize("service", SERVICES)
def test_document_is_openapi_3_1_with_info_paths_and_components(service):
    document = DOCS[service]
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] and document["info"]["version"]
    assert set(document) <= {
        "openapi",
        "info",
        "jsonSchemaDialect",
        "servers",
        "paths",
        "webhooks",
        "components",
        "security",
        "tags",
        "externalDocs",
    }
    assert document["paths"] and document["components"]["schemas"]
    assert load_openapi_document(ROOT / "services" / service / "openapi.json") == document


# answers that are not JSON: a statement's other formats (?format=csv|html) and the
# dashboard's pages; every other answer, refusals included, is JSON
NON_JSON_ANSWERS = {
    ("settlement", "GET /statements/{cycle_id}", "200"): {"application/json", "text/csv"},
    ("settlement", "GET /sellers/{seller_id}/statements/{cycle_id}", "200"): {
        "application/json",
        "text/csv",
        "text/html",
    },
    ("ops", "GET /dashboard", "200"): {"text/html"},
    ("ops", "POST /dashboard/sign-in", "401"): {"text/html"},
    ("ops", "GET /dashboard/static/{name}", "200"): {
        "application/javascript",
        "text/css",
        "image/svg+xml",
    },
}


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_has_documented_responses(service):
    document = DOCS[service]
    operation_ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"
    tags = {tag["name"] for tag in document.get("tags", [])}
    schemes = document["components"].get("securitySchemes", {})
    for path, method, operation in operations(document):
        where = f"{method.upper()} {path}"
        assert operation["responses"], where
        for status, answer in operation["responses"].items():
            assert re.fullmatch(r"[1-5]\d\d", status), (where, status)
            assert answer["description"], (where, status)
            allowed = NON_JSON_ANSWERS.get((service, where, status), {"application/json"})
            assert set(answer.get("content", {})) <= allowed, (where, status)
            for media in answer.get("content", {}).values():
                assert "schema" in media, (where, status)
        templated = set(re.findall(r"\{([^}]+)\}", path))
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert templated == declared, where
        for parameter in operation.get("parameters", []):
            assert parameter["in"] in ("path", "query", "header", "cookie"), where
            assert "schema" in parameter, (where, parameter["name"])
            if parameter["in"] == "path":
                assert parameter["required"] is True, where
        assert set(operation.get("tags", [])) <= tags, where
        for requirement in operation.get("security", []):
            assert set(requirement) <= set(schemes), where
    assert {"/health", "/openapi.json"} <= set(document["paths"])
    assert set(document["paths"]["/health"]["get"]["responses"]) == {"200", "503"}


@pytest.mark.parametrize("service", SERVICES)
def test_every_schema_is_a_valid_2020_12_schema(service):
    document = DOCS[service]
    for pointer in schema_locations(document):
        Draft202012Validator.check_schema(resolve_pointer(document, pointer))


@pytest.mark.parametrize("service", SERVICES)
def test_every_ref_resolves_inside_the_document(service):
    document = DOCS[service]
    refs = [(p, v["$ref"]) for p, v in walk(document) if isinstance(v, dict) and "$ref" in v]
    assert refs
    for pointer, target in refs:
        assert target.startswith("#/"), (pointer, target)
        resolve_pointer(document, target[1:])
    for pointer in schema_locations(document):  # and the validator resolves them as well
        validator(document, pointer).is_valid(None)


@pytest.mark.parametrize("service", SERVICES)
def test_every_component_schema_is_used(service):
    document = DOCS[service]
    used = {
        v["$ref"].removeprefix("#/components/schemas/")
        for _, v in walk(document)
        if isinstance(v, dict) and "$ref" in v
    }
    assert set(document["components"]["schemas"]) == used


@pytest.mark.parametrize("service", SERVICES)
def test_objects_state_their_additional_properties_and_money_is_integer(service):
    document = DOCS[service]
    for pointer, value in walk(document["components"]["schemas"], "/components/schemas"):
        if isinstance(value, dict) and value.get("type") == "object":
            assert "additionalProperties" in value, pointer
        if isinstance(value, dict) and "type" in value:
            types = value["type"] if isinstance(value["type"], list) else [value["type"]]
            assert "number" not in types, f"{pointer}: use integers (minor units), not number"
        if isinstance(value, dict) and "amount_minor" in value.get("properties", {}):
            assert value["properties"]["amount_minor"]["type"] == "integer", pointer
            assert set(value["required"]) >= {"amount_minor", "currency"}, pointer
    currencies = [
        schema for name, schema in document["components"]["schemas"].items() if name == "Currency"
    ]
    for currency in currencies:
        assert set(currency["enum"]) == set(CURRENCY_EXPONENTS)
        assert all(re.fullmatch(currency["pattern"], code) for code in currency["enum"])


@pytest.mark.parametrize("service", SERVICES)
def test_every_example_matches_its_schema(service):
    document = DOCS[service]
    checked = 0
    for path, method, operation in operations(document):
        base = f"/paths/{escape(path)}/{method}"
        places = [(f"{base}/requestBody", operation.get("requestBody", {}))]
        places += [(f"{base}/responses/{s}", a) for s, a in operation["responses"].items()]
        for where, holder in places:
            for media, body in holder.get("content", {}).items():
                check = validator(document, f"{where}/content/{escape(media)}/schema")
                samples = [e["value"] for e in body.get("examples", {}).values()]
                samples += [body["example"]] if "example" in body else []
                for sample in samples:
                    check.validate(sample)
                    checked += 1
        for index, parameter in enumerate(operation.get("parameters", [])):
            if "example" in parameter:
                validator(document, f"{base}/parameters/{index}/schema").validate(
                    parameter["example"]
                )
        for status, answer in operation["responses"].items():
            if status not in ("200", "201", "202") and "application/json" in answer.get(
                "content", {}
            ):
                assert answer["content"]["application/json"].get("examples"), (path, status)
    assert checked >= 5


# ---------------------------------------------------------------- the code's own bodies


def refusal(call, *args: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        call(*args)
    return info.value


def assert_refusal(service: str, path: str, error: ApiError) -> None:
    assert_response(service, path, "post", error.status, error.body())


def request_example(service: str, path: str, name: str) -> dict[str, Any]:
    body = DOCS[service]["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    return json.loads(json.dumps(body["examples"][name]["value"]))


def test_returns_request_examples_are_accepted_by_the_parser():
    examples = DOCS["returns"]["paths"]["/returns"]["post"]["requestBody"]["content"]
    for name in examples["application/json"]["examples"]:
        parse_return_claim(request_example("returns", "/returns", name))


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"lines": [{"unit_price": {"amount_minor": 1.5, "currency": "XYZ"}}]},
        {"lines": "nope", "photo_refs": None, "payment_method": "CASH", "delivered_at": "x"},
        {"order_ref": " ", "market": 7, "buyer_notes": 3, "lines": [1, 2]},
    ],
)
def test_returns_invalid_request_bodies_match_the_422_schema(body):
    assert_refusal("returns", "/returns", refusal(parse_return_claim, body))


def test_returns_unreadable_bodies_and_keys_match_400_and_413():
    for raw in (b"{", b"[]", b"\xff", b""):
        assert_refusal("returns", "/returns", refusal(parse_json_object, raw))
    assert_refusal("returns", "/returns", refusal(parse_json_object, b" " * (256 * 1024 + 1)))
    for key in ("", "k" * 129, "tab\there"):
        assert_refusal("returns", "/returns", refusal(check_idempotency_key, key))


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({}, 202),
        ({"category": "perishables"}, 422),
        ({"delivered_at": "2001-01-01"}, 422),
        ({"delivered_at": "2999-01-01"}, 422),
    ],
)
def test_returns_policy_answers_match_202_and_422(changes, status):
    body = request_example("returns", "/returns", "eur_card") | changes
    if "delivered_at" not in changes:
        body["delivered_at"] = "2026-01-01"
    request = request_of(body)
    now = 1_767_500_000_000  # 2026-01-04
    decision = deployed_rules().decide(request, now)
    events = decision_events("RMA-0123456789ABCDEF0123", request, decision, "key-1", now)
    [(_, decided)] = events
    answer_status, answer = answer_for("RMA-0123456789ABCDEF0123", decided, decision.accepted)
    assert answer_status == status
    assert_response("returns", "/returns", "post", answer_status, answer)


def test_inspection_request_example_is_accepted_and_refusals_match():
    parse_scan(request_example("inspection", "/inspections", "one_item"))
    tokens = {"ST-1": "token-of-station-one", "ST-2": "token-of-station-two"}
    for header in (None, "Basic abc", "Bearer wrong-token"):
        assert_refusal("inspection", "/inspections", refusal(authenticate, tokens, header))
    assert_refusal("inspection", "/inspections", refusal(authorize_station, "ST-2", "ST-1"))
    for body in ({}, {"items": [{"grade": "E", "matches_order": "yes", "photo_refs": [""]}]}):
        assert_refusal("inspection", "/inspections", refusal(parse_scan, body))
    conflict = ApiError(
        409,
        "not_awaiting_inspection",
        "return R is CLOSED",
        extra={"return_id": "R", "state": return_tracking.CLOSED},
    )
    assert_refusal("inspection", "/inspections", conflict)


def test_pickup_request_examples_are_accepted_and_refusals_match():
    for name in ("collected", "attempt_failed"):
        callback_event(request_example("pickup", "/carrier/callbacks", name), "pickup")
    for body in ({}, {"status": "attempt_failed", "reason": "CARRIER_ERROR", "attempt_no": 0}):
        assert_refusal("pickup", "/carrier/callbacks", refusal(callback_event, body, "pickup"))
    for timestamp, signature in ((None, None), ("x", "sha256=0"), ("0", "sha256=0")):
        with pytest.raises(SignatureError) as info:
            verify(b"secret", timestamp, signature, b"{}", 1_790_000_000)
        # what carrier_callback answers for a SignatureError
        error = ApiError(401, "bad_signature", str(info.value))
        assert_refusal("pickup", "/carrier/callbacks", error)


def test_request_enums_match_the_code():
    returns = DOCS["returns"]["components"]["schemas"]
    stated = returns["ReturnRequest"]["properties"]["payment_method"]["enum"]
    assert set(stated) == {*PAYMENT_METHODS, None}  # null: not stated (the order's)
    inspection = DOCS["inspection"]["components"]["schemas"]
    assert set(inspection["InspectedItem"]["properties"]["grade"]["enum"]) == GRADES
    conflict = inspection["NotAwaitingInspectionError"]["properties"]["state"]["enum"]
    assert set(conflict) == {
        return_tracking.REQUESTED,
        return_tracking.AWAITING_PICKUP,
        return_tracking.INSPECTED,
        return_tracking.CLOSED,
        return_tracking.REINSPECTION,  # same_station
    }
    assert set(returns["DisputeRequest"]["properties"]["reason"]["enum"]) == DISPUTE_REASONS
    callback = DOCS["pickup"]["components"]["schemas"]["CarrierCallback"]
    assert set(callback["properties"]["status"]["enum"]) == STATUSES
    [failed] = [
        c for c in callback["allOf"] if c["if"]["properties"]["status"]["const"] == "attempt_failed"
    ]
    assert set(failed["then"]["properties"]["reason"]["enum"]) == FAILURE_REASONS
    coordinator = DOCS["coordinator"]["components"]["schemas"]
    assert coordinator["SagaStatus"]["enum"] == [str(s) for s in saga.Status]
    assert set(coordinator["SagaStep"]["enum"]) == set(saga.STEP_OF.values())


# ---------------------------------------------------------------- the saga's status view

RID = "RMA-OPENAPI-1"
FORWARD = [
    "ReturnRequested",
    "ReturnAccepted",
    "PickupScheduled",
    "PickupAttemptFailed",
    "PickupCompleted",
    "InspectionRecorded",
    "IntakeCompleted",
    "RefundIssued",
]


def served_view(state: saga.SagaState) -> dict[str, Any]:
    """What the coordinator serves: the state goes through its stored form first (the slim
    record and its explanation, as JSON)."""
    slim = json.loads(json.dumps(stored_saga.slim_record(state)))
    explanation = json.loads(json.dumps(stored_saga.explanation_after(None, None, state)))
    shown = stored_saga.shown_state(slim, explanation)
    return json.loads(json.dumps(saga.status_view(shown)))


def views_along(names: list[str]) -> list[dict[str, Any]]:
    state, views, clock = None, [], iter(range(1_800_000_000_000, 1_900_000_000_000, 10))
    for name in names:
        state = saga.decide(state, name, event(name, RID), next(clock)).state
        views.append(served_view(state))
    return views


@pytest.mark.parametrize(
    "names",
    [
        FORWARD,
        ["ReturnRequested", "ReturnRejected", "PickupCompleted"],
        [*FORWARD[:-1], "RefundFailed"],
        ["PickupCompleted", "ReturnRequested", "ReturnAccepted", "PickupScheduled"],
        ["InspectionRecorded"],
    ],
    ids=["completed", "rejected-then-ignored", "needs-attention", "parked", "new"],
)
def test_status_view_in_every_state_matches_the_200_schema(names):
    for view in views_along(names):
        assert_response("coordinator", "/returns/{return_id}", "get", 200, view)


def test_status_view_schema_is_strict():
    [*_, view] = views_along(FORWARD)
    assert view["refund"]["amount"]["amount_minor"] == 4498
    for broken in (
        {**view, "surprise": 1},
        {
            **view,
            "refund": {**view["refund"], "amount": {"amount_minor": 44.98, "currency": "EUR"}},
        },
        {**view, "status": "DONE"},
        {k: v for k, v in view.items() if k != "history"},
    ):
        assert not validator(
            DOCS["coordinator"], response_pointer("/returns/{return_id}", "get", 200)
        ).is_valid(broken)


# ---------------------------------------------------------------- serving


def served_page(app: web.Application, path: str) -> Any:
    return next(r.handler for r in app.router.routes() if r.resource.canonical == path)


def test_add_openapi_page_reads_the_file_once_when_the_app_is_built(tmp_path):
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(DOCS["pickup"]), encoding="utf-8")
    app = web.Application()
    add_openapi_page(app, path)
    path.unlink()  # served from memory from now on
    response = asyncio.run(served_page(app, "/openapi.json")(None))
    assert (response.status, json.loads(response.body)) == (200, DOCS["pickup"])


@pytest.mark.parametrize("content", ["[]", '{"openapi": "3.0.3"}', "{"])
def test_add_openapi_page_refuses_what_is_not_an_openapi_3_1_document(tmp_path, content):
    path = tmp_path / "openapi.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError):
        add_openapi_page(web.Application(), path)


# ---------------------------------------------------------------- refund


def test_refund_webhook_example_is_accepted_and_refusals_match():
    document = DOCS["refund"]
    operation = document["paths"]["/webhooks/psp"]["post"]
    example = operation["requestBody"]["content"]["application/json"]["examples"]["settled"]
    name, record = webhook_event(example["value"], "refund")
    assert name == "RefundSettled" and record["amount"]["amount_minor"] == 5703
    failed = {**example["value"], "type": "refund.failed"}
    failed["refund"] = {**failed["refund"], "status": "failed"}
    with pytest.raises(ApiError) as refused:
        webhook_event(failed, "refund")
    assert refused.value.status == 422
    assert_response("refund", "/webhooks/psp", "post", 422, refused.value.body())


def test_refund_order_ledger_summary_matches_the_200_schema():
    order = {
        "currency": "EUR",
        "lines": [{"line_id": "L1", "sku": "SKU-A", "unit_price_minor": 1000, "quantity": 3}],
        "discount_minor": 100,
        "shipping_fee_minor": 0,
    }
    fees = {
        "return_shipping_fee_minor": 0,
        "restocking_fee_bp": 0,
        "restocking_fee_flat_minor": 0,
        "damage_deduction_bp": 0,
    }
    entry = None
    for return_id in ("RMA-1", "RMA-2"):
        command = {
            "order_ref": "ORD-1",
            "order": order,
            "returning": [{"line_id": "L1", "units": 1}],
            "liable": "SELLER",
            "fees": fees,
        }
        entry, _ = order_refund_ledger.reserve(entry, return_id, command)
    entry, _ = order_refund_ledger.release(entry, "RMA-1", {"order_ref": "ORD-1", "reason": "x"})
    summary = order_refund_ledger.summary(entry)
    assert_response("refund", "/orders/{order_ref}/refunds", "get", 200, summary)


@settings(max_examples=500)
@given(
    st.text(
        alphabet=st.sampled_from(
            [" ", "\t", "\x0b", "\x1c", "\x85", "\xa0", "\u2028", "\ufeff", "a", "é", "\x9f"]
        ),
        max_size=12,
    )
    | st.text(max_size=2100)
)
def test_the_verdict_reason_check_and_its_document_agree_on_every_string(reason):
    documented = validator(DOCS["risk"], "/components/schemas/VerdictRequest")
    body = {"verdict": "deny", "reason": reason}
    assert documented.is_valid(body) == reason_is_given(reason)
