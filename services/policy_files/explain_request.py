"""The request file of `boomerang policy explain`, checked against
schemas/policy/return-explain-request.schema.json before the pure explanation runs."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema

from services.decisions.policy.explain import ExplainInputError
from services.policy_files.loader import POLICY_SCHEMAS


@cache
def _request_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((POLICY_SCHEMAS / "return-explain-request.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def parse_request(text: str) -> dict[str, Any]:
    try:
        request = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExplainInputError(f"not JSON: {exc}") from exc
    errors = sorted(_request_validator().iter_errors(request), key=lambda e: list(e.path))
    if errors:
        raise ExplainInputError(
            "; ".join(
                f"{'.'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
                for error in errors
            )
        )
    return request
