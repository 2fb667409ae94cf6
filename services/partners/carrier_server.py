"""Carrier double: a real local HTTP server standing in for the courier ("double-express").

The pickup service books a pickup (`POST /pickups`, with an `Idempotency-Key`), may cancel it
(`DELETE /pickups/{booking_id}`), and hears what happened through signed callbacks that this
double POSTs to `CARRIER_CALLBACK_URL`: zero or more `attempt_failed`, then one `collected`.
Callbacks are delivered at least once, retried with backoff while the receiver is down.
Faults (errors, latency, ghost successes, failed attempts, damage) come from a `CarrierFaults`
plan set at start (`CARRIER_FAULTS`) or at run time (`POST /admin/faults`).

    python -m services.partners.carrier_server
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from services.eventing.log_setup import configure_logging, get_logger
from services.partners.fault_injection import FaultPlan, FaultPlanError, count_field, rate_field
from services.pickup.carrier_signature import signature_headers

SERVICE_NAME = "carrier"
CARRIER_NAME = "double-express"
FAILED_ATTEMPT_REASONS = ("BUYER_ABSENT", "PARCEL_NOT_READY")

# callback delivery: exponential backoff until a 2xx, giving up after `callback_give_up_s`
BACKOFF_START_S = 0.2
BACKOFF_CAP_S = 5.0
CALLBACK_REQUEST_TIMEOUT_S = 10.0
RETRYABLE_4XX = frozenset({401, 408, 429})

PICKUP_WINDOW_MS = 4 * 3600 * 1000
HOUR_MS = 3600 * 1000
MAX_TEXT_LENGTH = 500
MAX_IDEMPOTENCY_KEY_LENGTH = 255
REPLAYED_HEADERS = {"Idempotent-Replayed": "true"}

log = get_logger(__name__)


@dataclass
class CarrierFaults(FaultPlan):
    """The shared faults plus the carrier's own: failed pickup attempts and damaged parcels."""

    attempt_failure_rate: float = rate_field()
    max_failed_attempts: int = count_field(0, maximum=20)
    damage_rate: float = rate_field()


@dataclass(frozen=True)
class CarrierSettings:
    host: str = "127.0.0.1"
    port: int = 8091
    callback_url: str = "http://127.0.0.1:8084/carrier/callbacks"
    signing_secret: str = "dev-carrier-secret"
    callback_delay_ms: int = 300
    callback_give_up_s: float = 15 * 60
    faults: CarrierFaults = field(default_factory=CarrierFaults)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CarrierSettings:
        """Settings from `CARRIER_*` variables; ValueError names the variable that is wrong."""
        defaults = cls()
        try:
            faults = CarrierFaults.from_json(env.get("CARRIER_FAULTS"))
        except FaultPlanError as exc:
            raise ValueError(f"CARRIER_FAULTS: {exc}") from exc
        return cls(
            host=env.get("CARRIER_HOST") or defaults.host,
            port=_env_int(env, "CARRIER_PORT", defaults.port, minimum=0),
            callback_url=env.get("CARRIER_CALLBACK_URL") or defaults.callback_url,
            signing_secret=env.get("CARRIER_SIGNING_SECRET") or defaults.signing_secret,
            callback_delay_ms=_env_int(
                env, "CARRIER_CALLBACK_DELAY_MS", defaults.callback_delay_ms, minimum=0
            ),
            callback_give_up_s=_env_int(
                env, "CARRIER_CALLBACK_GIVE_UP_S", int(defaults.callback_give_up_s), minimum=1
            ),
            faults=faults,
        )


@dataclass(frozen=True)
class PickupRequest:
    return_id: str
    buyer_id: str
    pickup_address: str
    parcel_count: int


@dataclass
class Booking:
    booking_id: str
    tracking_number: str
    request: PickupRequest
    idempotency_key: str
    request_fingerprint: str
    window_start: int
    window_end: int
    created_at: int
    status: str = "scheduled"  # scheduled | cancelled | collected
    callbacks_sent: int = 0  # callbacks the receiver acknowledged with a 2xx
    delivery: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def return_id(self) -> str:
        return self.request.return_id

    def to_json(self) -> dict[str, Any]:
        return {
            "booking_id": self.booking_id,
            "tracking_number": self.tracking_number,
            "carrier": CARRIER_NAME,
            "return_id": self.request.return_id,
            "buyer_id": self.request.buyer_id,
            "pickup_address": self.request.pickup_address,
            "parcel_count": self.request.parcel_count,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "created_at": self.created_at,
            "status": self.status,
        }


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


class CarrierDouble:
    """State and handlers of one carrier double; everything runs on one event loop."""

    def __init__(self, settings: CarrierSettings) -> None:
        self.settings = settings
        self.faults: CarrierFaults = settings.faults
        self.bookings: dict[str, Booking] = {}
        self._bookings_by_key: dict[str, Booking] = {}
        self._key_locks: dict[str, asyncio.Lock] = {}
        self._deliveries: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._backoff_jitter = random.Random()  # separate from the plan's seeded stream

    async def lifespan(self, _app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: the callback HTTP client, and no task left behind."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=CALLBACK_REQUEST_TIMEOUT_S)
        )
        log.info(
            "carrier double ready",
            port=self.settings.port,
            callback_url=self.settings.callback_url,
            faults=self.faults.to_dict(),
        )
        try:
            yield
        finally:
            for task in self._deliveries:
                task.cancel()
            await asyncio.gather(*self._deliveries, return_exceptions=True)
            await self._session.close()

    # --- pickups -------------------------------------------------------------------------

    async def create_pickup(self, request: web.Request) -> web.Response:
        await self._inject_faults()
        key = _idempotency_key(request)
        payload = await _json_object(request)
        pickup = _pickup_request(payload)
        request["return_id"] = pickup.return_id
        fingerprint = _fingerprint(payload)
        async with self._key_locks.setdefault(key, asyncio.Lock()):
            existing = self._bookings_by_key.get(key)
            if existing is not None:
                if existing.request_fingerprint != fingerprint:
                    raise _key_reused(key)
                log.info("pickup booking replayed", booking_id=existing.booking_id)
                return web.json_response(existing.to_json(), headers=REPLAYED_HEADERS)
            booking = self._book(pickup, key, fingerprint)
        self._ghost_if_planned("pickup booked")
        return web.json_response(booking.to_json(), status=201)

    async def cancel_pickup(self, request: web.Request) -> web.Response:
        await self._inject_faults()
        booking = self._booking(request.match_info["booking_id"])
        request["return_id"] = booking.return_id
        if booking.status == "collected":
            raise ApiError(409, "already_collected", "the parcel was already collected")
        if booking.status == "scheduled":
            booking.status = "cancelled"
            if booking.delivery is not None:
                booking.delivery.cancel()  # a cancelled booking sends no further callbacks
            log.info("pickup cancelled", booking_id=booking.booking_id)
            self._ghost_if_planned("pickup cancelled")
        return web.json_response({"booking_id": booking.booking_id, "status": booking.status})

    async def list_pickups(self, request: web.Request) -> web.Response:
        return_id = request.query.get("return_id")
        if return_id is not None:
            request["return_id"] = return_id
        per_return = Counter(booking.return_id for booking in self.bookings.values())
        pickups = [
            {
                **booking.to_json(),
                "idempotency_key": booking.idempotency_key,
                "callbacks_sent": booking.callbacks_sent,
                "bookings_for_key": per_return[booking.return_id],
            }
            for booking in self.bookings.values()
            if return_id is None or booking.return_id == return_id
        ]
        return web.json_response({"pickups": pickups})

    async def stats(self, _request: web.Request) -> web.Response:
        statuses = Counter(booking.status for booking in self.bookings.values())
        per_return = Counter(booking.return_id for booking in self.bookings.values())
        return web.json_response(
            {
                "bookings": len(self.bookings),
                "cancelled": statuses["cancelled"],
                "collected": statuses["collected"],
                "duplicate_bookings": sum(1 for n in per_return.values() if n > 1),
            }
        )

    # --- faults --------------------------------------------------------------------------

    async def get_faults(self, _request: web.Request) -> web.Response:
        return web.json_response(self.faults.to_dict())

    async def set_faults(self, request: web.Request) -> web.Response:
        changes = await _json_object(request)
        try:
            self.faults = self.faults.updated(changes)
        except FaultPlanError as exc:
            raise ApiError(400, "invalid_fault_plan", str(exc)) from exc
        log.info("fault plan changed", faults=self.faults.to_dict())
        return web.json_response(self.faults.to_dict())

    async def _inject_faults(self) -> None:
        """Latency, then maybe a 503 before anything is done."""
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_s)
        if self.faults.should_error():
            log.warning("injected fault: answering 503 without doing anything")
            raise _unavailable()

    def _ghost_if_planned(self, what: str) -> None:
        """Maybe answer 503 although the operation was done (the caller never hears)."""
        if self.faults.should_ghost():
            log.warning("injected ghost: operation done, answering 503", operation=what)
            raise _unavailable()

    # --- booking and callbacks -----------------------------------------------------------

    def _book(self, pickup: PickupRequest, key: str, fingerprint: str) -> Booking:
        now = _now_ms()
        window_start = (now // HOUR_MS + 2) * HOUR_MS  # a whole hour, at least an hour away
        booking = Booking(
            booking_id=str(uuid.uuid4()),
            tracking_number=f"DX{uuid.uuid4().int % 10**10:010d}",
            request=pickup,
            idempotency_key=key,
            request_fingerprint=fingerprint,
            window_start=window_start,
            window_end=window_start + PICKUP_WINDOW_MS,
            created_at=now,
        )
        self.bookings[booking.booking_id] = booking
        self._bookings_by_key[key] = booking
        booking.delivery = asyncio.create_task(self._run_pickup(booking))
        self._deliveries.add(booking.delivery)
        booking.delivery.add_done_callback(self._deliveries.discard)
        log.info("pickup booked", booking_id=booking.booking_id, key=key)
        return booking

    def _booking(self, booking_id: str) -> Booking:
        booking = self.bookings.get(booking_id)
        if booking is None:
            raise ApiError(404, "not_found", f"no booking {booking_id!r}")
        return booking

    async def _run_pickup(self, booking: Booking) -> None:
        """The carrier's side of one booking: failed attempts as the plan says, then collection."""
        delay_s = self.settings.callback_delay_ms / 1000
        failed_attempts = 0
        with structlog.contextvars.bound_contextvars(
            return_id=booking.return_id, booking_id=booking.booking_id
        ):
            while True:
                await asyncio.sleep(delay_s)
                faults = self.faults  # the plan in force now; chaos runs change it mid-flight
                attempt_no = failed_attempts + 1
                if failed_attempts < faults.max_failed_attempts and faults.roll(
                    faults.attempt_failure_rate
                ):
                    failed_attempts += 1
                    reason = faults.rng.choice(FAILED_ATTEMPT_REASONS)
                    await self._deliver(
                        booking, self._callback(booking, "attempt_failed", attempt_no, reason)
                    )
                    continue
                booking.status = "collected"
                damaged = faults.roll(faults.damage_rate)
                weight_grams = faults.rng.randint(300, 4000) * booking.request.parcel_count
                await self._deliver(
                    booking,
                    self._callback(booking, "collected", attempt_no, None, damaged, weight_grams),
                )
                return

    @staticmethod
    def _callback(
        booking: Booking,
        status: str,
        attempt_no: int,
        reason: str | None,
        carrier_noted_damage: bool = False,
        parcel_weight_grams: int | None = None,
    ) -> dict[str, Any]:
        return {
            "callback_id": str(uuid.uuid4()),
            "booking_id": booking.booking_id,
            "return_id": booking.return_id,
            "tracking_number": booking.tracking_number,
            "status": status,
            "reason": reason,
            "attempt_no": attempt_no,
            "occurred_at": _now_ms(),
            "carrier_noted_damage": carrier_noted_damage,
            "parcel_weight_grams": parcel_weight_grams,
        }

    async def _deliver(self, booking: Booking, callback: dict[str, Any]) -> None:
        """POST one signed callback until a 2xx; the same body (and callback_id) every time."""
        assert self._session is not None, "the app is not running"
        body = json.dumps(callback).encode()
        secret = self.settings.signing_secret.encode()
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.settings.callback_give_up_s
        backoff_s = BACKOFF_START_S
        context = {"callback_id": callback["callback_id"], "callback_status": callback["status"]}
        for try_no in itertools.count(1):
            # a fresh timestamp per try, so a long outage doesn't make the signature stale
            headers = {
                "Content-Type": "application/json",
                **signature_headers(secret, int(time.time()), body),
            }
            outcome: int | str
            try:
                async with self._session.post(
                    self.settings.callback_url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    outcome = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            if isinstance(outcome, int) and 200 <= outcome < 300:
                booking.callbacks_sent += 1
                log.info("callback delivered", try_no=try_no, **context)
                return
            if isinstance(outcome, int) and 400 <= outcome < 500 and outcome not in RETRYABLE_4XX:
                log.error("callback refused, not retried", status=outcome, **context)
                return
            if loop.time() + backoff_s > give_up_at:
                log.error("callback given up", try_no=try_no, last_outcome=outcome, **context)
                return
            log.warning(
                "callback not delivered, retrying",
                try_no=try_no,
                outcome=outcome,
                retry_in_ms=round(backoff_s * 1000),
                **context,
            )
            await asyncio.sleep(backoff_s * self._backoff_jitter.uniform(0.8, 1.0))
            backoff_s = min(backoff_s * 2, BACKOFF_CAP_S)


# --- app -----------------------------------------------------------------------------------


def create_app(settings: CarrierSettings) -> web.Application:
    carrier = CarrierDouble(settings)
    app = web.Application(middlewares=[_errors_and_request_log])
    app.cleanup_ctx.append(carrier.lifespan)
    app.router.add_get("/health", _health)
    app.router.add_get("/admin/faults", carrier.get_faults)
    app.router.add_post("/admin/faults", carrier.set_faults)
    app.router.add_post("/pickups", carrier.create_pickup)
    app.router.add_get("/pickups", carrier.list_pickups)
    app.router.add_get("/pickups/stats", carrier.stats)
    app.router.add_delete("/pickups/{booking_id}", carrier.cancel_pickup)
    return app


def main() -> int:
    configure_logging(SERVICE_NAME)
    try:
        settings = CarrierSettings.from_env(os.environ)
    except ValueError as exc:
        log.error("invalid settings", error=str(exc))
        return 2
    # run_app turns SIGTERM/SIGINT into a graceful shutdown (cleanup contexts run)
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=5.0,
    )
    log.info("carrier double stopped")
    return 0


# --- HTTP helpers --------------------------------------------------------------------------


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


def _fingerprint(payload: Mapping[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _pickup_request(payload: Mapping[str, Any]) -> PickupRequest:
    return PickupRequest(
        return_id=_text(payload, "return_id"),
        buyer_id=_text(payload, "buyer_id"),
        pickup_address=_text(payload, "pickup_address"),
        parcel_count=_whole_number(payload, "parcel_count", minimum=1, maximum=100),
    )


def _text(payload: Mapping[str, Any], name: str) -> str:
    value = _required(payload, name)
    if not isinstance(value, str) or not value.strip():
        raise _invalid_field(name, "must be a non-empty string")
    if len(value) > MAX_TEXT_LENGTH:
        raise _invalid_field(name, f"must be at most {MAX_TEXT_LENGTH} characters")
    return value


def _whole_number(payload: Mapping[str, Any], name: str, *, minimum: int, maximum: int) -> int:
    value = _required(payload, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid_field(name, f"must be an integer, got {value!r}")
    if not minimum <= value <= maximum:
        raise _invalid_field(name, f"must be from {minimum} to {maximum}, got {value}")
    return value


def _required(payload: Mapping[str, Any], name: str) -> Any:
    if payload.get(name) is None:
        raise ApiError(422, "missing_field", f"{name} is required", field=name)
    return payload[name]


def _invalid_field(name: str, reason: str) -> ApiError:
    return ApiError(422, "invalid_field", f"{name} {reason}", field=name)


def _key_reused(key: str) -> ApiError:
    return ApiError(
        409,
        "idempotency_key_reused",
        f"Idempotency-Key {key!r} was already used with a different body",
    )


def _unavailable() -> ApiError:
    return ApiError(503, "service_unavailable", "the carrier is temporarily unavailable")


def _env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
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


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


if __name__ == "__main__":
    sys.exit(main())
