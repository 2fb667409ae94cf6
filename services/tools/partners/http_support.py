"""HTTP plumbing shared by the partner doubles (`carrier_server`, `psp_server`).

Errors as JSON `{"error", "detail"}` and one log line per request, `/health`, reading and
checking a JSON body, creating at most once per `Idempotency-Key`, and `PartnerDouble`: the
fault plan's admin endpoints and injected faults, routing, and running as its own process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from services.eventing.log_setup import configure_logging, get_logger
from services.tools.partners.fault_injection import FaultPlan, FaultPlanError

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
async def _errors_and_request_log(request: web.Request, handler: Handler) -> web.StreamResponse:
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


async def _health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


# --- reading a request ---------------------------------------------------------------------


def _idempotency_key(request: web.Request) -> str:
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


async def _json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
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


def _request_fingerprint(payload: Mapping[str, Any]) -> str:
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


def _unavailable(partner: str) -> ApiError:
    return ApiError(503, "service_unavailable", f"the {partner} is temporarily unavailable")


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
        key = _idempotency_key(request)
        payload = await _json_object(request)
        wanted = parse(payload)
        request["return_id"] = wanted.return_id
        fingerprint = _request_fingerprint(payload)
        async with self._locks.setdefault(key, asyncio.Lock()):
            existing = self.records.get(key)
            if existing is not None:
                if existing.request_fingerprint != fingerprint:
                    raise _key_reused(key)
                return existing, False
            record = create(wanted, key, fingerprint)
            self.records[key] = record
            return record, True


# --- the double ----------------------------------------------------------------------------

PlanT = TypeVar("PlanT", bound=FaultPlan)
HandlerT = TypeVar("HandlerT", bound=Callable[..., Awaitable[web.StreamResponse]])
_ROUTE = "partner_double_route"


def route(method: str, path: str) -> Callable[[HandlerT], HandlerT]:
    """Marks a `PartnerDouble` handler method as the one for `method path`."""

    def mark(handler: HandlerT) -> HandlerT:
        setattr(handler, _ROUTE, (method, path))
        return handler

    return mark


class PartnerDouble(Generic[PlanT, RecordT]):
    """What every double has: a fault plan, the records its `Idempotency-Key`s created, an app.

    `partner` names the double in the 503 detail ("the {partner} is temporarily unavailable").
    """

    def __init__(self, faults: PlanT, *, partner: str) -> None:
        self.faults = faults
        self.keys: IdempotencyKeys[RecordT] = IdempotencyKeys()
        self._partner = partner

    def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: what runs before the first request and after the last."""
        raise NotImplementedError

    def app(self) -> web.Application:
        """JSON errors and a log line per request, `/health`, then every `@route` handler: the
        fault plan's, then the double's own in the order they are defined."""
        app = web.Application(middlewares=[_errors_and_request_log])
        app.cleanup_ctx.append(self.lifespan)
        app.router.add_get("/health", _health)
        for cls in reversed(type(self).__mro__):
            for name, attribute in vars(cls).items():
                marked: tuple[str, str] | None = getattr(attribute, _ROUTE, None)
                if marked is not None:
                    method, path = marked
                    app.add_routes([web.route(method, path, getattr(self, name))])
        return app

    @route("GET", "/admin/faults")
    async def get_faults(self, _request: web.Request) -> web.Response:
        return web.json_response(self.faults.to_dict())

    @route("POST", "/admin/faults")
    async def set_faults(self, request: web.Request) -> web.Response:
        changes = await _json_object(request)
        try:
            self.faults = self.faults.updated(changes)
        except FaultPlanError as exc:
            raise ApiError(400, "invalid_fault_plan", str(exc)) from exc
        log.info("fault plan changed", faults=self.faults.to_dict())
        return web.json_response(self.faults.to_dict())

    async def inject_faults(self) -> None:
        """Latency, then maybe a 503 before anything is done."""
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_s)
        if self.faults.should_error():
            log.warning("injected fault: answering 503 without doing anything")
            raise _unavailable(self._partner)

    def ghost_if_planned(self, what: str) -> None:
        """Maybe answer 503 although the operation was done (the caller never hears)."""
        if self.faults.should_ghost():
            log.warning("injected ghost: operation done, answering 503", operation=what)
            raise _unavailable(self._partner)


def faults_from_env(plan: type[PlanT], env: Mapping[str, str], name: str) -> PlanT:
    """The plan in the variable `name` (no faults if unset); ValueError names the variable."""
    try:
        return plan.from_json(env.get(name))
    except FaultPlanError as exc:
        raise ValueError(f"{name}: {exc}") from exc


class DoubleSettings(Protocol):
    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


SettingsT = TypeVar("SettingsT", bound=DoubleSettings)


def run_double(
    service: str,
    settings_from_env: Callable[[Mapping[str, str]], SettingsT],
    double: Callable[[SettingsT], PartnerDouble[Any, Any]],
) -> int:
    """Serve the double until SIGTERM/SIGINT; 2 if its settings are invalid, else 0."""
    configure_logging(service)
    try:
        settings = settings_from_env(os.environ)
    except ValueError as exc:
        log.error("invalid settings", error=str(exc))
        return 2
    # run_app turns SIGTERM/SIGINT into a graceful shutdown (cleanup contexts run)
    web.run_app(
        double(settings).app(),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=5.0,
    )
    log.info(f"{service} double stopped")
    return 0


# --- signed callbacks ----------------------------------------------------------------------


async def post_signed_once(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    signed_headers: Callable[[int], dict[str, str]],
) -> int | str:
    """POST `body` (exactly as signed) once, signed with a fresh timestamp (a long outage
    doesn't make the signature stale): the HTTP status, or what went wrong."""
    headers = {"Content-Type": "application/json", **signed_headers(int(time.time()))}
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as answer:
            return answer.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"


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


def now_ms() -> int:
    return time.time_ns() // 1_000_000
