"""Small helpers shared by the services' HTTP endpoints: JSON errors with a reason.

Every refusal is `{"error": <code>, "detail": <human reason>, "fields": [...]}` with a
4xx status: 400 unreadable body, 401/403 auth, 404 unknown, 409 conflict, 422 invalid field.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from aiohttp.web_exceptions import HTTPException

from services.eventing.log_setup import get_logger

log = get_logger(__name__)
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


View = Callable[..., Awaitable[Any]]


def json_endpoint(view: View) -> View:
    """Turn ApiError into its JSON answer; anything else unexpected into a logged 500."""

    @wraps(view)
    async def wrapper(web: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await view(web, request, *args, **kwargs)
        except ApiError as exc:
            log.info("request refused", status=exc.status, error=exc.code, detail=exc.detail[:300])
            return web.json(exc.body(), status=exc.status)
        except HTTPException as exc:  # raised by aiohttp itself, e.g. a body over its limit
            code = "body_too_large" if exc.status == 413 else "http_error"
            log.info("request refused by the HTTP layer", status=exc.status, error=code)
            return web.json({"error": code, "detail": exc.reason}, status=exc.status)
        except Exception:
            log.exception("request failed")
            return web.json(
                {"error": "internal", "detail": "unexpected error; see logs"}, status=500
            )

    return wrapper


# ---------------------------------------------------------------- field checks (pure)


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
        if not isinstance(value, str) or (required and not value.strip()):
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
        if isinstance(value, bool) or not isinstance(value, int):
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

    def choice(self, key: str, allowed: frozenset[str] | set[str]) -> str:
        value = self.data.get(key)
        if value not in allowed:
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


def post_page(app: Any, path: str, handler: View) -> None:
    """Register `handler(web, request, **path_params)` as the POST handler of `path`
    (Faust's function pages answer GET only)."""
    from faust.web import View as FaustView

    class PostView(FaustView):
        async def post(self, request: Any, **params: Any) -> Any:
            return await handler(self, request, **params)

    PostView.__name__ = PostView.__qualname__ = f"{handler.__name__}_view"
    app.page(path)(PostView)
