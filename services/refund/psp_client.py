"""Thin HTTP adapter for the payment provider's refund API (and its charges: an exchange's
difference the buyer pays).

The Idempotency-Key comes from the refund command (`{return_id}-refund-{attempt}`): a retry
after a crash between "the provider paid" and "we recorded it" gets the same refund back.
Answers: accepted (succeeded or pending), declined with a code (permanent), transient
(5xx, 429, timeouts, a connection dropped mid-request — retried with the same provider) or
`ProviderDown` (no connection could be made: the request never left, so another provider may
take it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.eventing.handler_contract import DomainRejection, TransientFailure
from services.eventing.partner_http import (
    PartnerConnectFailed,
    PartnerHttp,
    PartnerResponse,
    PartnerUnreachable,
)

PROVIDER = "psp"


def _json_object(response: PartnerResponse) -> dict[str, Any]:
    """The body as a JSON object; {} for anything else (a proxy's or router's error page
    must end as a refusal with its status, not as a parsing crash)."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class ProviderDown(TransientFailure):
    """The provider could not be reached at all: nothing was sent, failing over is safe."""


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
    schedule: tuple[dict[str, Any], ...] = ()  # BNPL: the plan after the refund
    refunded_to_buyer_minor: int | None = None  # BNPL: the part paid back to the buyer
    settles_at: int | None = None  # PENDING: when the money should arrive


@dataclass(frozen=True)
class RefundOrder:
    """One refund as the provider needs it."""

    key: str  # Idempotency-Key, `{return_id}-refund-{attempt}`
    return_id: str
    amount_minor: int
    currency: str
    method: str
    refund_account: dict[str, str] | None = None  # BANK_TRANSFER
    order_ref: str = ""
    order_paid_minor: int | None = None  # BNPL: the provider rebuilds the plan from it

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "return_id": self.return_id,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "method": self.method,
            "reference": self.key,
        }
        if self.refund_account:
            body["bank_account"] = dict(self.refund_account)
        if self.order_ref:
            body["order_ref"] = self.order_ref
        if self.order_paid_minor is not None:
            body["order_paid_minor"] = self.order_paid_minor
        return body


@dataclass(frozen=True)
class ChargeOrder:
    """One charge of the buyer as the provider needs it."""

    key: str  # Idempotency-Key, `{return_id}-exchange-charge`
    return_id: str
    amount_minor: int
    currency: str
    method: str
    order_ref: str
    description: str

    def body(self) -> dict[str, Any]:
        return {
            "return_id": self.return_id,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "method": self.method,
            "reference": self.key,
            "order_ref": self.order_ref,
            "description": self.description,
        }


class PspClient:
    def __init__(self, http: PartnerHttp, provider: str = PROVIDER) -> None:
        self.http = http
        self.provider = provider

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _post(self, path: str, body: dict[str, Any], key: str) -> PartnerResponse:
        """POST with the Idempotency-Key: ProviderDown when no connection could be made,
        TransientFailure when the request may have reached the provider (or it asks for
        a retry)."""
        try:
            response = await self.http.post(path, json=body, headers={"Idempotency-Key": key})
        except PartnerConnectFailed as exc:
            raise ProviderDown(f"{self.provider}: {type(exc).__name__}: {exc}") from exc
        except PartnerUnreachable as exc:
            raise TransientFailure(f"{self.provider}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise TransientFailure(f"{self.provider}: HTTP {response.status_code}")
        return response

    async def refund(self, order: RefundOrder) -> PspAnswer:
        response = await self._post("/refunds", order.body(), order.key)
        data = _json_object(response)
        if response.status_code in (200, 201) and str(data.get("status")) in ("failed", "voided"):
            # a replayed refund that ended badly since (a transfer sent back, a void)
            return PspAnswer(
                False,
                decline_code=data.get("decline_code") or str(data["status"]),
                detail=f"the refund {data.get('refund_id')} ended {data['status']}",
                replayed=True,
            )
        if response.status_code in (200, 201):
            return PspAnswer(
                True,
                data["refund_id"],
                str(data["status"]).upper(),
                replayed=response.headers.get("Idempotent-Replayed") == "true",
                schedule=tuple(data.get("schedule") or ()),
                refunded_to_buyer_minor=data.get("refunded_to_buyer_minor"),
                settles_at=data.get("settles_at"),
            )
        if response.status_code == 402:
            return PspAnswer(
                False,
                decline_code=data.get("decline_code", "declined"),
                detail=data.get("detail", ""),
            )
        raise PspRefused(f"psp: HTTP {response.status_code} {response.text[:300]}")

    async def charge(self, order: ChargeOrder) -> PspAnswer:
        """Take a payment from the buyer (an exchange's difference): accepted with the
        provider's charge id, declined (402) with a code, or transient."""
        response = await self._post("/charges", order.body(), order.key)
        data = _json_object(response)
        if response.status_code in (200, 201) and data.get("charge_id"):
            return PspAnswer(
                True,
                str(data["charge_id"]),
                "CAPTURED",
                replayed=response.headers.get("Idempotent-Replayed") == "true",
            )
        if response.status_code == 402:
            code = data.get("decline_code", "declined")
            return PspAnswer(False, decline_code=code, detail=data.get("detail", ""))
        raise PspRefused(f"psp charge: HTTP {response.status_code} {response.text[:300]}")

    async def void(self, refund_id: str) -> str:
        """Void a pending refund: "voided", or "already_settled" when money has moved."""
        try:
            response = await self.http.post(f"/refunds/{refund_id}/void")
        except PartnerUnreachable as exc:
            raise TransientFailure(f"psp void: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise TransientFailure(f"psp void: HTTP {response.status_code}")
        if response.status_code == 200:
            return "voided"
        if response.status_code == 409:
            return str(_json_object(response).get("error", "already_settled"))
        raise PspRefused(f"psp void: HTTP {response.status_code} {response.text[:300]}")


def psp_http(base_url: str, timeout_s: float = 5.0, name: str = "psp") -> PartnerHttp:
    return PartnerHttp(base_url, timeout_s, partner=name)
