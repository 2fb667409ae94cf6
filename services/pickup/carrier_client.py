"""Thin HTTP adapter for the carrier's booking API.

Every call carries an Idempotency-Key derived from the return and the step, so a retry
after a crash books (or cancels) once. 5xx, 429, timeouts and connection errors are
transient (retried by the consume loop); other 4xx answers are permanent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.eventing.handler_contract import DomainRejection, TransientFailure
from services.eventing.partner_http import (
    PartnerHttp,
    PartnerUnreachable,
)


class CarrierRefused(DomainRejection):
    reason = "carrier-refused"


@dataclass(frozen=True)
class Booking:
    booking_id: str
    tracking_number: str
    carrier: str
    window_start: int
    window_end: int


class CarrierClient:
    def __init__(self, http: PartnerHttp) -> None:
        self.http = http

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(self, method: str, path: str, key: str, body: Any = None) -> dict[str, Any]:
        try:
            response = await self.http.request(
                method, path, json=body, headers={"Idempotency-Key": key}
            )
        except PartnerUnreachable as exc:  # timeouts, refused connections, resets
            raise TransientFailure(f"carrier {method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise TransientFailure(f"carrier {method} {path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise CarrierRefused(
                f"carrier {method} {path}: HTTP {response.status_code} {response.text[:300]}"
            )
        return response.json()

    async def book(
        self, key: str, return_id: str, buyer_id: str, address: str, parcel_count: int
    ) -> Booking:
        body = {
            "return_id": return_id,
            "buyer_id": buyer_id,
            "pickup_address": address,
            "parcel_count": parcel_count,
        }
        data = await self._call("POST", "/pickups", key, body)
        return Booking(
            data["booking_id"],
            data["tracking_number"],
            data["carrier"],
            data["window_start"],
            data["window_end"],
        )

    async def cancel(self, key: str, booking_id: str) -> str:
        """ "cancelled", or "already_collected" when the courier was faster (409)."""
        try:
            data = await self._call("DELETE", f"/pickups/{booking_id}", key)
        except CarrierRefused as exc:
            if "HTTP 409" in str(exc) and "already_collected" in str(exc):
                return "already_collected"
            if "HTTP 404" in str(exc):
                return "unknown_booking"
            raise
        return str(data.get("status", "cancelled"))

    async def reschedule(
        self, key: str, booking_id: str, window_start: int, window_end: int
    ) -> Rescheduled:
        """The booking moved, or refused (collected, cancelled, unknown, a window the
        carrier does not serve: 404, 409, 422)."""
        body = {"window_start": window_start, "window_end": window_end}
        try:
            data = await self._call("POST", f"/pickups/{booking_id}/reschedule", key, body)
        except CarrierRefused as exc:
            return Rescheduled(False, None, None, str(exc)[:300])
        return Rescheduled(True, data["window_start"], data["window_end"], "")

    async def drop_off(self, key: str, booking_id: str, point_id: str) -> DropOff:
        """The booking turned into a drop-off at `point_id`, or refused (404, 409, 422)."""
        try:
            data = await self._call(
                "POST", f"/pickups/{booking_id}/drop-off", key, {"point_id": point_id}
            )
        except CarrierRefused as exc:
            return DropOff(False, "", str(exc)[:300])
        return DropOff(True, str((data.get("drop_off") or {}).get("code", "")), "")


@dataclass(frozen=True)
class DropOff:
    booked: bool
    code: str
    detail: str


@dataclass(frozen=True)
class Rescheduled:
    moved: bool
    window_start: int | None
    window_end: int | None
    detail: str


def carrier_http(base_url: str, timeout_s: float = 5.0) -> PartnerHttp:
    """One pooled client per process."""
    return PartnerHttp(base_url, timeout_s, partner="carrier")
