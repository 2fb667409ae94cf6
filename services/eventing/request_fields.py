"""Reading a request's JSON body field by field, and the refusals it gives: every refusal
is `{"error": <code>, "detail": <human reason>, "fields": [...]}` with a 4xx status (400
unreadable body, 401/403 auth, 404 unknown, 409 conflict, 413 too large, 422 invalid field).
No I/O: the HTTP layer (`http_api`) reads the body and writes the answer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from services.decisions.visible_text import has_visible

MAX_BODY_BYTES = 256 * 1024


@dataclass
class FieldProblem:
    field: str
    problem: str


@dataclass
class ApiError(Exception):
    status: int
    code: str
    detail: str
    fields: list[FieldProblem] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # e.g. Retry-After, WWW-Authenticate

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "detail": self.detail, **self.extra}
        if self.fields:
            body["fields"] = [{"field": f.field, "problem": f.problem} for f in self.fields]
        return body


def invalid(fields: list[FieldProblem]) -> ApiError:
    summary = "; ".join(f"{f.field}: {f.problem}" for f in fields[:5])
    return ApiError(422, "invalid_request", summary, fields)


def parse_json_object(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"body is over {MAX_BODY_BYTES} bytes")
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ApiError(400, "malformed_json", "body must be a JSON object")
    return value


def json_integer(value: Any) -> int | None:
    """`value` as an int when JSON Schema calls it an integer (1 and 1.0 both are; true,
    1.5 and "1" are not), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


class Fields:
    """Collects problems while reading fields out of a JSON object."""

    def __init__(self, data: dict[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix
        self.problems: list[FieldProblem] = []

    def _name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def problem(self, key: str, message: str) -> None:
        self.problems.append(FieldProblem(self._name(key), message))

    def text(
        self, key: str, *, required: bool = True, max_len: int = 128, default: str = ""
    ) -> str:
        value = self.data.get(key)
        if value is None:
            if required:
                self.problem(key, "is required")
            return default
        if not isinstance(value, str) or (required and not has_visible(value)):
            self.problem(key, "must be a non-empty string" if required else "must be a string")
            return default
        if len(value) > max_len:
            self.problem(key, f"must be at most {max_len} characters")
            return default
        return value

    def integer(
        self,
        key: str,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
        required: bool = True,
        default: int | None = None,
    ) -> int | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.problem(key, "is required")
            return default
        value = json_integer(value)
        if value is None:
            self.problem(key, "must be an integer")
            return default
        if minimum is not None and value < minimum:
            self.problem(key, f"must be at least {minimum}")
            return default
        if maximum is not None and value > maximum:
            self.problem(key, f"must be at most {maximum}")
            return default
        return value

    def boolean(self, key: str) -> bool | None:
        value = self.data.get(key)
        if not isinstance(value, bool):
            self.problem(key, "is required and must be true or false")
            return None
        return value

    def choice(
        self, key: str, allowed: frozenset[str] | set[str], default: str | None = None
    ) -> str:
        """One of `allowed` (`default` when the key is absent and there is one); a value of
        another type is a problem too, never a TypeError (a list or object is unhashable)."""
        value = self.data.get(key, default)
        if not isinstance(value, str) or value not in allowed:
            self.problem(key, f"must be one of {', '.join(sorted(allowed))}")
            return ""
        return value

    def string_list(self, key: str, *, max_items: int = 20, max_len: int = 256) -> list[str]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(
            isinstance(v, str) and 0 < len(v) <= max_len for v in value
        ):
            self.problem(key, f"must be a list of strings (each 1..{max_len} characters)")
            return []
        if len(value) > max_items:
            self.problem(key, f"must have at most {max_items} items")
            return []
        return value

    def objects(self, key: str, *, max_items: int) -> list[dict[str, Any]]:
        value = self.data.get(key)
        if not isinstance(value, list) or not value:
            self.problem(key, "must be a non-empty list")
            return []
        if len(value) > max_items:
            self.problem(key, f"must have at most {max_items} items")
            return []
        if not all(isinstance(v, dict) for v in value):
            self.problem(key, "items must be JSON objects")
            return []
        return value

    def nested(self, key: str, data: dict[str, Any]) -> Fields:
        child = Fields(data, prefix=f"{self._name(key)}.")
        child.problems = self.problems  # share one list
        return child
