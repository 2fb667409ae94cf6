"""Every request parser refuses a wrongly typed field with a 4xx naming it, never with an
exception (a 500): each documented example body, with each field in turn (nested objects
and list items too) replaced by a value of another type (found by schemathesis: an object
where a string was expected made `value not in allowed` raise TypeError)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.eventing.request_fields import ApiError
from services.inspection.scan_request import parse_scan
from services.pickup.callback_parsing import callback_event
from services.refund.webhook_parsing import webhook_event
from services.returns.return_request import (
    parse_cancellation,
    parse_refund_account,
    parse_return_claim,
)
from services.risk.handlers import _verdict_fields

ROOT = Path(__file__).resolve().parents[2]
WRONG = ({}, [], None, 1.5, -1, True, "", "x" * 5000, {"nested": [1, {}]}, [{}], "\u0000")

PARSERS: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {
    ("returns", "/returns"): parse_return_claim,
    ("returns", "/returns/{return_id}/cancel"): lambda body: parse_cancellation(body, "buyer"),
    ("returns", "/returns/{return_id}/bank-account"): parse_refund_account,
    ("inspection", "/inspections"): parse_scan,
    ("pickup", "/carrier/callbacks"): lambda body: callback_event(body, "pickup"),
    ("refund", "/webhooks/psp"): lambda body: webhook_event(body, "refund"),
    ("risk", "/reviews/{return_id}/verdict"): _verdict_fields,
}


def examples(service: str, path: str) -> list[dict[str, Any]]:
    document = json.loads((ROOT / "services" / service / "openapi.json").read_text())
    content = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    found = [e["value"] for e in content.get("examples", {}).values()]
    found += [content["example"]] if "example" in content else []
    return [e for e in found if isinstance(e, dict)]


def places(value: Any, at: tuple = ()) -> Iterator[tuple]:
    """Every place in a body: each key of each object, each item of each list."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*at, key)
            yield from places(inner, (*at, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield (*at, index)
            yield from places(inner, (*at, index))


def replaced(body: dict[str, Any], place: tuple, wrong: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    holder = changed
    for step in place[:-1]:
        holder = holder[step]
    holder[place[-1]] = copy.deepcopy(wrong)
    return changed


@pytest.mark.parametrize(("service", "path"), sorted(PARSERS))
def test_a_wrongly_typed_field_anywhere_is_a_refusal_never_an_error(service, path):
    parse = PARSERS[(service, path)]
    bodies = examples(service, path)
    assert bodies, f"{service} {path}: no example body in its document"
    tried = 0
    for body in bodies:
        for place in places(body):
            for wrong in WRONG:
                try:
                    parse(replaced(body, place, wrong))
                except ApiError as exc:
                    assert 400 <= exc.status < 500, (place, wrong, exc.status)
                tried += 1
    assert tried >= 10
