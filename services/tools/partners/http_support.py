"""HTTP plumbing of the partner doubles: reading requests and answering them.

Errors as JSON `{"error", "detail"}` and one log line per request, `/health`, reading and
checking a JSON body and its fields, creating at most once per `Idempotency-Key` (and the
answer to such a creation), settings from environment variables. The doubles' skeleton on
top of this is `partner_double`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from services.eventing.log_setup import get_logger

MAX_TEXT_LENGTH = 500
MAX_IDEMPOTENCY_KEY_LENGTH = 255
REPLAYED_HEADERS = {"Idempotent-Replayed": "true"}

log = get_logger(__name__)


class ApiError(Exception):
    """An answer other than success, rendered as `{"error": code, "detail": reason}`."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra

    def response(self) -> web.Response:
        body = {"error": self.code, "detail": self.detail, **self.extra}
        return web.json_response(body, status=self.status)


@web.middleware
async def errors_and_request_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as JSON `{"error", "detail"}`, and one structured log line per request."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except ApiError as exc:
        response = exc.response()
    except web.HTTPException as exc:  # aiohttp's own: unknown route, wrong method, too large
        code = exc.reason.lower().replace(" ", "_")
        response = ApiError(exc.status, code, exc.reason).response()
    except Exception:
        log.exception("request failed", method=request.method, path=request.path)
        response = ApiError(500, "internal_error", "unexpected error, see the logs").response()
    log.info(
        "request",
        method=request.method,
        path=request.path,
        status=response.status,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
        return_id=request.get("return_id"),
    )
    return response


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def unavailable(partner: str) -> ApiError:
    return ApiError(503, "service_unavailable", f"the {partner} is temporarily unavailable")


# --- reading a request ---------------------------------------------------------------------


def idempotency_key(request: web.Request) -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        raise ApiError(400, "missing_idempotency_key", "the Idempotency-Key header is required")
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"the Idempotency-Key header is longer than {MAX_IDEMPOTENCY_KEY_LENGTH} characters",
        )
    return key


async def json_object(request: web.Request, *, empty_is_object: bool = False) -> dict[str, Any]:
    """The body as a JSON object (400 otherwise); an empty body is `{}` if `empty_is_object`."""
    raw = await request.read()
    if empty_is_object and not raw.strip():
        return {}
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return payload


class ForReturn(Protocol):
    @property
    def return_id(self) -> str: ...


ForReturnT = TypeVar("ForReturnT", bound=ForReturn)


def filter_by_return_id(request: web.Request, items: Iterable[ForReturnT]) -> list[ForReturnT]:
    """The items of the `?return_id=` a listing asks for (all without one), in order.

    The return id also goes into the request log line.
    """
    return_id = request.query.get("return_id")
    if return_id is None:
        return list(items)
    request["return_id"] = return_id
    return [item for item in items if item.return_id == return_id]


def found(
    request: web.Request, records: Mapping[str, ForReturnT], record_id: str, missing: str
) -> ForReturnT:
    """The record `record_id` names (404 with `missing` as detail if none); its return id goes
    into the request log line."""
    record = records.get(record_id)
    if record is None:
        raise ApiError(404, "not_found", missing)
    request["return_id"] = record.return_id
    return record


def request_fingerprint(payload: Mapping[str, Any]) -> str:
    """The same for the same JSON object, whatever the key order or spacing it came with."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def text_field(payload: Mapping[str, Any], name: str) -> str:
    value = required_field(payload, name)
    if not isinstance(value, str) or not value.strip():
        raise invalid_field(name, "must be a non-empty string")
    if len(value) > MAX_TEXT_LENGTH:
        raise invalid_field(name, f"must be at most {MAX_TEXT_LENGTH} characters")
    return value


def whole_number_field(
    payload: Mapping[str, Any],
    name: str,
    *,
    minimum: int,
    maximum: int,
    expected: str = "an integer",
) -> int:
    """An int (never a JSON true/false) from `minimum` to `maximum`; `expected` names it."""
    value = required_field(payload, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_field(name, f"must be {expected}, got {value!r}")
    if not minimum <= value <= maximum:
        raise invalid_field(name, f"must be from {minimum} to {maximum}, got {value}")
    return value


def required_field(payload: Mapping[str, Any], name: str) -> Any:
    if payload.get(name) is None:
        raise ApiError(422, "missing_field", f"{name} is required", field=name)
    return payload[name]


def invalid_field(name: str, reason: str) -> ApiError:
    return ApiError(422, "invalid_field", f"{name} {reason}", field=name)


def _key_reused(key: str) -> ApiError:
    return ApiError(
        409,
        "idempotency_key_reused",
        f"Idempotency-Key {key!r} was already used with a different body",
    )


# --- idempotent creation -------------------------------------------------------------------


class Fingerprinted(Protocol):
    @property
    def request_fingerprint(self) -> str: ...


WantedT = TypeVar("WantedT", bound=ForReturn)
RecordT = TypeVar("RecordT", bound=Fingerprinted)


class IdempotencyKeys(Generic[RecordT]):
    """What each `Idempotency-Key` created; a repeat of the same request gets the same record."""

    def __init__(self) -> None:
        self.records: dict[str, RecordT] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def create_once(
        self,
        request: web.Request,
        parse: Callable[[dict[str, Any]], WantedT],
        create: Callable[[WantedT, str, str], RecordT],
    ) -> tuple[RecordT, bool]:
        """(record, created): `create(wanted, key, fingerprint)` unless the key was used before.

        The body is checked by `parse` (its `return_id` goes into the request log line); a key
        used before with a different body is a 409. One request per key at a time.
        """
        key = idempotency_key(request)
        payload = await json_object(request)
        wanted = parse(payload)
        request["return_id"] = wanted.return_id
        return await self.create_keyed(key, wanted, request_fingerprint(payload), create)

    async def create_keyed(
        self,
        key: str,
        wanted: WantedT,
        fingerprint: str,
        create: Callable[[WantedT, str, str], RecordT],
    ) -> tuple[RecordT, bool]:
        """`create_once` for a request already read (one entry of a batch)."""
        async with self._locks.setdefault(key, asyncio.Lock()):
            existing = self.records.get(key)
            if existing is not None:
                if existing.request_fingerprint != fingerprint:
                    raise _key_reused(key)
                return existing, False
            record = create(wanted, key, fingerprint)
            self.records[key] = record
            return record, True


def creation_answer(
    record: Mapping[str, Any], *, created: bool, refused: ApiError | None = None
) -> web.Response:
    """201 for a new record, 200 with `Idempotent-Replayed` for a repeat. A refused outcome
    (remembered for its key like any other) is `refused`'s error plus the record, either way."""
    headers = None if created else REPLAYED_HEADERS
    if refused is not None:
        body = {"error": refused.code, "detail": refused.detail, **refused.extra, **record}
        return web.json_response(body, status=refused.status, headers=headers)
    return web.json_response(dict(record), status=201 if created else 200, headers=headers)


# --- settings and time ---------------------------------------------------------------------


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def env_path(env: Mapping[str, str], name: str) -> Path | None:
    """The file the variable `name` names; None if it is unset or empty."""
    raw = env.get(name)
    return Path(raw) if raw else None


def now_ms() -> int:
    return time.time_ns() // 1_000_000
