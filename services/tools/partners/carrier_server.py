"""Carrier double: a real local HTTP server standing in for the courier ("double-express").

The pickup service books a pickup (`POST /pickups`, with an `Idempotency-Key`), may cancel it
(`DELETE /pickups/{booking_id}`), and hears what happened through signed callbacks that this
double POSTs to `CARRIER_CALLBACK_URL`: zero or more `attempt_failed`, then one `collected`.
Callbacks are delivered at least once, retried with backoff while the receiver is down.
Settlement files claims for parcels the carrier damaged (`POST /claims`, `GET /claims/{id}`:
carrier_claims). Faults (errors, latency, ghost successes, failed attempts, damage, rejected
and short-paid claims) come from a `CarrierFaults`
plan set at start (`CARRIER_FAULTS`) or at run time (`POST /admin/faults`).

    python -m services.tools.partners.carrier_server
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from services.eventing.log_setup import get_logger
from services.eventing.webhook_signature import CARRIER_SIGNATURE
from services.tools.partners import http_support, partner_double
from services.tools.partners.carrier_claims import ClaimsDesk, ClaimTerms, claim_request
from services.tools.partners.fault_injection import FaultPlan, count_field, rate_field
from services.tools.partners.signed_delivery import RetryPolicy, post_until_acknowledged

SERVICE_NAME = "carrier"
CARRIER_NAME = "double-express"
FAILED_ATTEMPT_REASONS = ("BUYER_ABSENT", "PARCEL_NOT_READY")

# callback delivery: exponential backoff until a 2xx, giving up after `callback_give_up_s`;
# a 4xx other than these is final
BACKOFF_START_S = 0.2
BACKOFF_CAP_S = 5.0
CALLBACK_REQUEST_TIMEOUT_S = 10.0
RETRYABLE_4XX = frozenset({401, 408, 429})

PICKUP_WINDOW_MS = 4 * 3600 * 1000
DROP_OFF_POINT_PREFIX = "DP-"  # the carrier's drop-off points (any DP-… id is one)
HOUR_MS = 3600 * 1000

log = get_logger(__name__)


@dataclass
class CarrierFaults(FaultPlan):
    """The shared faults plus the carrier's own: failed pickup attempts and damaged parcels."""

    attempt_failure_rate: float = rate_field()
    max_failed_attempts: int = count_field(0, maximum=20)
    damage_rate: float = rate_field()
    claim_rejection_rate: float = rate_field()  # claims the carrier rejects
    claim_shortfall_share: float = rate_field()  # the share of a paid claim it keeps
    # a wait before the first attempt (a pickup the buyer can still move: tests, drills)
    first_attempt_delay_ms: int = count_field(0, maximum=600_000)
    # after a failed attempt, the carrier proposes the next window instead of just retrying
    reschedule_proposal_rate: float = rate_field()


@dataclass(frozen=True)
class CarrierSettings:
    host: str = "127.0.0.1"
    port: int = 8091
    callback_url: str = "http://127.0.0.1:8084/carrier/callbacks"
    signing_secret: str = "dev-carrier-secret"
    callback_delay_ms: int = 300
    callback_give_up_s: float = 15 * 60
    claim_terms: ClaimTerms = field(default_factory=ClaimTerms)
    faults: CarrierFaults = field(default_factory=CarrierFaults)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CarrierSettings:
        """Settings from `CARRIER_*` variables; ValueError names the variable that is wrong."""
        defaults = cls()
        faults = partner_double.faults_from_env(CarrierFaults, env, "CARRIER_FAULTS")
        return cls(
            host=env.get("CARRIER_HOST") or defaults.host,
            port=http_support.env_int(env, "CARRIER_PORT", defaults.port, minimum=0),
            callback_url=env.get("CARRIER_CALLBACK_URL") or defaults.callback_url,
            signing_secret=env.get("CARRIER_SIGNING_SECRET") or defaults.signing_secret,
            callback_delay_ms=http_support.env_int(
                env, "CARRIER_CALLBACK_DELAY_MS", defaults.callback_delay_ms, minimum=0
            ),
            callback_give_up_s=http_support.env_int(
                env, "CARRIER_CALLBACK_GIVE_UP_S", int(defaults.callback_give_up_s), minimum=1
            ),
            claim_terms=ClaimTerms(
                http_support.env_int(
                    env, "CARRIER_CLAIM_DECISION_MS", ClaimTerms.decision_ms, minimum=0
                ),
                http_support.env_int(
                    env, "CARRIER_CLAIM_PAYMENT_MS", ClaimTerms.payment_ms, minimum=0
                ),
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
    cancel_requests: int = 0  # DELETEs received, whatever they answered
    reschedules: int = 0  # windows moved, by the buyer or by the carrier
    drop_off: dict[str, str] | None = None  # {point_id, code}: the buyer brings the parcel
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
            "reschedules": self.reschedules,
            "drop_off": self.drop_off,
        }


class CarrierDouble(partner_double.PartnerDouble[CarrierFaults, Booking]):
    """State and handlers of one carrier double; everything runs on one event loop."""

    def __init__(self, settings: CarrierSettings) -> None:
        super().__init__(settings.faults, partner="carrier")
        self.settings = settings
        self.bookings: dict[str, Booking] = {}
        self._deliveries: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._backoff_jitter = random.Random()  # separate from the plan's seeded stream
        self.claims = ClaimsDesk(settings.claim_terms)
        # Idempotency-Key of a reschedule or drop-off -> (its body's fingerprint, its answer)
        self.change_keys: dict[str, tuple[str, dict[str, Any]]] = {}

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

    # --- claims --------------------------------------------------------------------------

    @partner_double.route("POST", "/claims")
    async def file_claim(self, request: web.Request) -> web.Response:
        """File a claim once per claim_id (carrier_claims)."""
        payload = await http_support.json_object(request)
        wanted = claim_request(payload)
        request["return_id"] = wanted.return_id
        claim, created = self.claims.file(
            wanted,
            http_support.request_fingerprint(payload),
            http_support.now_ms(),
            self.faults.roll(self.faults.claim_rejection_rate),
            self.faults.claim_shortfall_share,
            self.faults.rng.randrange(1000),
        )
        log.info("claim filed" if created else "claim repeated", claim_id=wanted.claim_id)
        return http_support.creation_answer(claim.to_json(http_support.now_ms()), created=created)

    @partner_double.route("GET", "/claims/{claim_id}")
    async def get_claim(self, request: web.Request) -> web.Response:
        claim = self.claims.claims.get(request.match_info["claim_id"])
        if claim is None:
            raise http_support.ApiError(404, "not_found", "no such claim")
        request["return_id"] = claim.request.return_id
        return web.json_response(claim.to_json(http_support.now_ms()))

    @partner_double.route("POST", "/pickups")
    async def create_pickup(self, request: web.Request) -> web.Response:
        await self.inject_faults()
        booking, created = await self.keys.create_once(request, _pickup_request, self._book)
        if created:
            self.ghost_if_planned("pickup booked")
        else:
            log.info("pickup booking replayed", booking_id=booking.booking_id)
        return http_support.creation_answer(booking.to_json(), created=created)

    @partner_double.route("DELETE", "/pickups/{booking_id}")
    async def cancel_pickup(self, request: web.Request) -> web.Response:
        await self.inject_faults()
        booking_id = request.match_info["booking_id"]
        booking = http_support.found(
            request, self.bookings, booking_id, f"no booking {booking_id!r}"
        )
        booking.cancel_requests += 1
        if booking.status == "collected":
            raise http_support.ApiError(
                409, "already_collected", "the parcel was already collected"
            )
        if booking.status == "scheduled":
            booking.status = "cancelled"
            if booking.delivery is not None:
                booking.delivery.cancel()  # a cancelled booking sends no further callbacks
            log.info("pickup cancelled", booking_id=booking.booking_id)
            self.ghost_if_planned("pickup cancelled")
        return web.json_response({"booking_id": booking.booking_id, "status": booking.status})

    @partner_double.route("POST", "/pickups/{booking_id}/reschedule")
    async def reschedule_pickup(self, request: web.Request) -> web.Response:
        """Move a booking to the window the body gives (Idempotency-Key: the same key and
        body again answer the same; 409 once collected or cancelled; 422 a window not an
        hour away, shorter than an hour, longer than 8 h or more than 14 days away). The
        parcel is then collected in the new window: its attempts start again."""

        def move(booking: Booking, payload: dict[str, Any]) -> None:
            start, end = _window(payload, http_support.now_ms())
            booking.window_start, booking.window_end = start, end
            booking.reschedules += 1
            log.info("pickup rescheduled", booking_id=booking.booking_id, window_start=start)

        return await self._change_booking(request, move)

    @partner_double.route("POST", "/pickups/{booking_id}/drop-off")
    async def make_drop_off(self, request: web.Request) -> web.Response:
        """The buyer brings the parcel to a point instead (Idempotency-Key; 409 once
        collected or cancelled, 422 an unknown point): no courier comes, the answer's code
        is shown at the point, and the parcel is reported collected there a moment later."""

        def drop_off(booking: Booking, payload: dict[str, Any]) -> None:
            point = http_support.text_field(payload, "point_id")
            if not point.startswith(DROP_OFF_POINT_PREFIX):
                raise http_support.invalid_field("point_id", "is not one of the carrier's points")
            booking.drop_off = {"point_id": point, "code": f"DO-{uuid.uuid4().hex[:8].upper()}"}
            log.info("pickup made a drop-off", booking_id=booking.booking_id, point_id=point)

        return await self._change_booking(request, drop_off)

    async def _change_booking(
        self, request: web.Request, change: Callable[[Booking, dict[str, Any]], None]
    ) -> web.Response:
        """A change of a scheduled booking, once per Idempotency-Key (the same key and body
        again: the same answer; another body: 409); `change` may refuse the body (422).
        Its attempts start again afterwards."""
        await self.inject_faults()
        key = http_support.idempotency_key(request)
        payload = await http_support.json_object(request)
        fingerprint = http_support.request_fingerprint(payload)
        known = self.change_keys.get(key)
        if known is not None:
            if known[0] != fingerprint:
                raise http_support.ApiError(
                    409, "idempotency_key_reused", f"Idempotency-Key {key!r} had another body"
                )
            return web.json_response(known[1], headers=dict(http_support.REPLAYED_HEADERS))
        booking_id = request.match_info["booking_id"]
        booking = http_support.found(
            request, self.bookings, booking_id, f"no booking {booking_id!r}"
        )
        if booking.status != "scheduled":
            raise http_support.ApiError(
                409, f"already_{booking.status}", f"the booking is {booking.status}"
            )
        change(booking, payload)
        self._restart_attempts(booking)
        answer = booking.to_json()
        self.change_keys[key] = (fingerprint, answer)
        return web.json_response(answer)

    def _restart_attempts(self, booking: Booking) -> None:
        if booking.delivery is not None:
            booking.delivery.cancel()
        booking.delivery = asyncio.create_task(self._run_pickup(booking, first_wait=False))
        self._deliveries.add(booking.delivery)
        booking.delivery.add_done_callback(self._deliveries.discard)

    @partner_double.route("GET", "/pickups")
    async def list_pickups(self, request: web.Request) -> web.Response:
        listed = http_support.filter_by_return_id(request, self.bookings.values())
        per_return = Counter(booking.return_id for booking in self.bookings.values())
        pickups = [
            {
                **booking.to_json(),
                "idempotency_key": booking.idempotency_key,
                "callbacks_sent": booking.callbacks_sent,
                "cancel_requests": booking.cancel_requests,
                "bookings_for_key": per_return[booking.return_id],
            }
            for booking in listed
        ]
        return web.json_response({"pickups": pickups})

    @partner_double.route("GET", "/pickups/stats")
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

    # --- booking and callbacks -----------------------------------------------------------

    def _book(self, pickup: PickupRequest, key: str, fingerprint: str) -> Booking:
        now = http_support.now_ms()
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
        booking.delivery = asyncio.create_task(self._run_pickup(booking))
        self._deliveries.add(booking.delivery)
        booking.delivery.add_done_callback(self._deliveries.discard)
        log.info("pickup booked", booking_id=booking.booking_id, key=key)
        return booking

    async def _run_pickup(self, booking: Booking, first_wait: bool = True) -> None:
        """The carrier's side of one booking: failed attempts as the plan says (after one, it
        may propose the next window), then collection."""
        delay_s = self.settings.callback_delay_ms / 1000
        failed_attempts = 0
        with structlog.contextvars.bound_contextvars(
            return_id=booking.return_id, booking_id=booking.booking_id
        ):
            if first_wait and self.faults.first_attempt_delay_ms:
                await asyncio.sleep(self.faults.first_attempt_delay_ms / 1000)
            while True:
                await asyncio.sleep(delay_s)
                faults = self.faults  # the plan in force now; chaos runs change it mid-flight
                attempt_no = failed_attempts + 1
                if (
                    booking.drop_off is None
                    and failed_attempts < faults.max_failed_attempts
                    and faults.roll(faults.attempt_failure_rate)
                ):
                    failed_attempts += 1
                    reason = faults.rng.choice(FAILED_ATTEMPT_REASONS)
                    await self._deliver(
                        booking, self._callback(booking, "attempt_failed", attempt_no, reason)
                    )
                    if faults.roll(faults.reschedule_proposal_rate):
                        start = booking.window_end + 20 * HOUR_MS  # the next day's window
                        booking.window_start, booking.window_end = start, start + PICKUP_WINDOW_MS
                        booking.reschedules += 1
                        proposed = self._callback(booking, "rescheduled", attempt_no, None)
                        await self._deliver(booking, proposed)
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
            "occurred_at": http_support.now_ms(),
            "carrier_noted_damage": carrier_noted_damage,
            "parcel_weight_grams": parcel_weight_grams,
            "window_start": booking.window_start,
            "window_end": booking.window_end,
        }

    async def _deliver(self, booking: Booking, callback: dict[str, Any]) -> None:
        """POST one signed callback until a 2xx; the same body (and callback_id) every time.

        A 4xx other than 401/408/429 is final; after `callback_give_up_s` it is given up.
        """
        assert self._session is not None, "the app is not running"
        body = json.dumps(callback).encode()
        secret = self.settings.signing_secret.encode()
        delivered = await post_until_acknowledged(
            self._session,
            self.settings.callback_url,
            body,
            lambda now_s: CARRIER_SIGNATURE.signature_headers(secret, now_s, body),
            policy=RetryPolicy(
                BACKOFF_START_S,
                BACKOFF_CAP_S,
                give_up_after_s=self.settings.callback_give_up_s,
                retried_4xx=RETRYABLE_4XX,
            ),
            jitter=self._backoff_jitter,
            what="callback",
            callback_id=callback["callback_id"],
            callback_status=callback["status"],
        )
        if delivered:
            booking.callbacks_sent += 1


# --- app -----------------------------------------------------------------------------------


def main() -> int:
    return partner_double.run_double(SERVICE_NAME, CarrierSettings.from_env, CarrierDouble)


# --- HTTP helpers --------------------------------------------------------------------------


MIN_LEAD_MS, MIN_WINDOW_MS, MAX_WINDOW_MS = HOUR_MS, HOUR_MS, 8 * HOUR_MS
MAX_AHEAD_MS = 14 * 24 * HOUR_MS


def _window(payload: Mapping[str, Any], now_ms: int) -> tuple[int, int]:
    start = http_support.whole_number_field(
        payload, "window_start", minimum=now_ms + MIN_LEAD_MS, maximum=now_ms + MAX_AHEAD_MS
    )
    end = http_support.whole_number_field(
        payload, "window_end", minimum=start + MIN_WINDOW_MS, maximum=start + MAX_WINDOW_MS
    )
    return start, end


def _pickup_request(payload: Mapping[str, Any]) -> PickupRequest:
    return PickupRequest(
        return_id=http_support.text_field(payload, "return_id"),
        buyer_id=http_support.text_field(payload, "buyer_id"),
        pickup_address=http_support.text_field(payload, "pickup_address"),
        parcel_count=http_support.whole_number_field(
            payload, "parcel_count", minimum=1, maximum=100
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
