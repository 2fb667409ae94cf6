"""Charges in the PSP double: a buyer pays the provider (an exchange to a dearer variant:
the difference). `POST /charges` with an `Idempotency-Key` takes the payment once per key
(the same body again: the same charge; another body: 409), or declines it (402) when the
fault plan's `charge_decline_rate` draws it; `GET /charges?return_id=` lists them. Charges
are kept in memory (the double's refunds ledger file does not hold them).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Any

from services.tools.partners import http_support
from services.tools.partners.psp_refunds import METHODS

CAPTURED = "captured"
DECLINED = "declined"


@dataclass(frozen=True)
class ChargeRequest:
    return_id: str
    amount_minor: int
    currency: str
    method: str
    reference: str
    order_ref: str
    description: str


def charge_request(payload: dict[str, Any]) -> ChargeRequest:
    method = http_support.text_field(payload, "method")
    if method not in METHODS:
        raise http_support.invalid_field("method", f"must be one of {', '.join(sorted(METHODS))}")
    currency = http_support.text_field(payload, "currency")
    if len(currency) != 3 or not currency.isupper():
        raise http_support.invalid_field("currency", "must be an ISO 4217 code")
    return ChargeRequest(
        return_id=http_support.text_field(payload, "return_id"),
        amount_minor=http_support.whole_number_field(
            payload, "amount_minor", minimum=1, maximum=10**12
        ),
        currency=currency,
        method=method,
        reference=str(payload.get("reference") or ""),
        order_ref=str(payload.get("order_ref") or ""),
        description=str(payload.get("description") or "")[:200],
    )


@dataclass
class Charge:
    charge_id: str
    idempotency_key: str
    request_fingerprint: str
    return_id: str
    amount_minor: int
    currency: str
    method: str
    reference: str
    order_ref: str
    status: str  # captured | declined
    decline_code: str | None
    provider: str
    created_at: int

    def to_json(self) -> dict[str, Any]:
        public = asdict(self)
        del public["request_fingerprint"]
        return public


def new_charge(
    wanted: ChargeRequest, key: str, fingerprint: str, provider: str, decline_code: str | None
) -> Charge:
    return Charge(
        charge_id=f"ch_{uuid.uuid4().hex[:16]}",
        idempotency_key=key,
        request_fingerprint=fingerprint,
        return_id=wanted.return_id,
        amount_minor=wanted.amount_minor,
        currency=wanted.currency,
        method=wanted.method,
        reference=wanted.reference,
        order_ref=wanted.order_ref,
        status=DECLINED if decline_code else CAPTURED,
        decline_code=decline_code,
        provider=provider,
        created_at=http_support.now_ms(),
    )
