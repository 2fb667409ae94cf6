"""Requests' parameters checked against the operation's document (`documented_parameters`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from multidict import MultiDict

from services.engine.documented_parameters import DocumentedParameters
from tests.support.openapi_services import SERVICES

ROOT = Path(__file__).resolve().parents[2]

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "paths": {
        "/cycles/{market}/{number}": {
            "parameters": [{"$ref": "#/components/parameters/Market"}],
            "get": {
                "parameters": [
                    {
                        "name": "number",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 0},
                    },
                    {"name": "format", "in": "query", "schema": {"enum": ["json", "csv"]}},
                    {
                        "name": "tag",
                        "in": "query",
                        "schema": {"type": "array", "items": {"type": "integer"}},
                    },
                    {
                        "name": "X-Trace",
                        "in": "header",
                        "schema": {"type": "string", "pattern": "^[a-f0-9]{8}$"},
                    },
                ],
                "responses": {},
            },
        }
    },
    "components": {
        "parameters": {
            "Market": {
                "name": "market",
                "in": "path",
                "required": True,
                "schema": {"$ref": "#/components/schemas/Market"},
            }
        },
        "schemas": {"Market": {"type": "string", "pattern": "^[A-Z]{2}$"}},
    },
}
TEMPLATE = "/cycles/{market}/{number}"


def refusal(path: dict[str, str], query: list[tuple[str, str]] | None = None):
    return DocumentedParameters(DOCUMENT).refusal("GET", TEMPLATE, path, MultiDict(query or []))


def test_parameters_as_documented_pass() -> None:
    assert refusal({"market": "DE", "number": "12"}) is None
    assert (
        refusal({"market": "DE", "number": "0"}, [("format", "csv"), ("tag", "1"), ("tag", "2")])
        is None
    )


def test_undocumented_query_parameters_are_ignored() -> None:
    assert refusal({"market": "DE", "number": "1"}, [("utm", "x")]) is None


def test_headers_are_left_to_the_handler() -> None:
    """A malformed signature is the handler's 401, a malformed Idempotency-Key its 400."""
    assert DocumentedParameters(DOCUMENT).operations[("GET", TEMPLATE)]
    located = {p.location for p in DocumentedParameters(DOCUMENT).operations[("GET", TEMPLATE)]}
    assert located == {"path", "query"}


def test_undocumented_operations_are_not_checked() -> None:
    documented = DocumentedParameters(DOCUMENT)
    assert documented.refusal("POST", TEMPLATE, {}, MultiDict()) is None
    assert documented.refusal("GET", "/elsewhere", {}, MultiDict()) is None


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ({"market": "de", "number": "1"}, "path.market"),  # through two $refs
        ({"market": "DE", "number": "x"}, "path.number"),
        ({"market": "DE", "number": "-1"}, "path.number"),
        ({"market": "DE", "number": "1.5"}, "path.number"),
        ({"market": "DE\n", "number": "1"}, "path.market"),  # ECMA's `$` is the very end
    ],
)
def test_a_path_parameter_that_breaks_its_schema_is_a_404(path, field) -> None:
    refused = refusal(path)
    assert refused is not None and refused.status == 404 and refused.code == "not_found"
    assert [f.field for f in refused.fields] == [field]


@pytest.mark.parametrize(
    ("query", "field", "problem"),
    [
        ([("format", "xml")], "query.format", "is not one of"),
        ([("format", "csv"), ("format", "csv")], "query.format", "is given more than once"),
        ([("tag", "1"), ("tag", "two")], "query.tag", "is not of type"),
    ],
)
def test_a_query_parameter_that_breaks_its_schema_is_a_400(query, field, problem) -> None:
    refused = refusal({"market": "DE", "number": "1"}, query)
    assert refused is not None and refused.status == 400 and refused.code == "invalid_parameter"
    assert [f.field for f in refused.fields] == [field]
    assert refused.fields[0].problem.startswith(problem)


def test_the_problem_never_quotes_the_value_sent() -> None:
    refused = refusal({"market": "DE", "number": "1"}, [("format", "\x00" * 5000)])
    assert refused is not None
    assert "\x00" not in refused.detail and len(refused.detail) < 300


@pytest.mark.parametrize("service", SERVICES)
def test_every_documented_parameter_example_passes(service: str) -> None:
    document = json.loads((ROOT / "services" / service / "openapi.json").read_text())
    documented = DocumentedParameters(document)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            examples = {
                (p["in"], p["name"]): p["example"]
                for p in operation.get("parameters", [])
                if "example" in p
            }
            path_values = {n: str(v) for (loc, n), v in examples.items() if loc == "path"}
            query = MultiDict([(n, str(v)) for (loc, n), v in examples.items() if loc == "query"])
            if len(path_values) < path.count("{"):
                continue  # a path parameter without its example
            assert documented.refusal(method.upper(), path, path_values, query) is None
