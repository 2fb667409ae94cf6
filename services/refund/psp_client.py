"""Thin httpx adapter for the payment provider's refund API.

The Idempotency-Key comes from the refund command (`{return_id}-refund-{attempt}`): a retry
after a crash between "the provider paid" and "we recorded it" gets the same refund back.
Answers: accepted (succeeded or pending), declined with a code (permanent), or transient
(5xx, 429, timeouts, connection errors — retried).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from services.eventing.service_runtime import DomainRejection, TransientFailure

PROVIDER = "psp-double"


class PspRefused(DomainRejection):
    """The provider refused the request itself (e.g. a key reused with another body)."""

    reason = "psp-refused"


@dataclass(frozen=True)
class PspAnswer:
    accepted: bool
    refund_id: str = ""
    status: str = ""  # SUCCEEDED | PENDING
    decline_code: str = ""
    detail: str = ""
    replayed: bool = False


class PspClient:
    def __init__(self, http: httpx.AsyncClient, provider: str = PROVIDER) -> None:
        self.http = http
        self.provider = provider

    async def refund(
        self, key: str, return_id: str, amount_minor: int, currency: str, method: str
    ) -> PspAnswer:
        body: dict[str, Any] = {
            "return_id": return_id,
            "amount_minor": amount_minor,
            "currency": currency,
            "method": method,
            "reference": key,
        }
        try:
            response = await self.http.post("/refunds", json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError as exc:
            raise TransientFailure(f"psp: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise TransientFailure(f"psp: HTTP {response.status_code}")
        data = response.json()
        if response.status_code in (200, 201):
            return PspAnswer(
                True,
                data["refund_id"],
                str(data["status"]).upper(),
                replayed=response.headers.get("Idempotent-Replayed") == "true",
            )
        if response.status_code == 402:
            return PspAnswer(
                False,
                decline_code=data.get("decline_code", "declined"),
                detail=data.get("detail", ""),
            )
        raise PspRefused(f"psp: HTTP {response.status_code} {response.text[:300]}")

    async def void(self, refund_id: str) -> str:
        """Void a pending refund: "voided", or "already_settled" when money has moved."""
        try:
            response = await self.http.post(f"/refunds/{refund_id}/void")
        except httpx.TransportError as exc:
            raise TransientFailure(f"psp void: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise TransientFailure(f"psp void: HTTP {response.status_code}")
        if response.status_code == 200:
            return "voided"
        if response.status_code == 409:
            return str(response.json().get("error", "already_settled"))
        raise PspRefused(f"psp void: HTTP {response.status_code} {response.text[:300]}")


def psp_http(base_url: str, timeout_s: float = 5.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout_s, connect=2.0),
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
    )
