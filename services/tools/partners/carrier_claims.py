"""The carrier double's claims desk: the marketplace claims the value of a parcel the carrier
damaged or lost, the carrier decides and, when it accepts, pays.

`POST /claims` files a claim once per `claim_id` (the same body again: the same claim;
another body: 409). A claim is `filed`, then after `CARRIER_CLAIM_DECISION_MS` `accepted`
or `rejected` (`claim_rejection_rate` in the fault plan), and an accepted one is `paid`
after `CARRIER_CLAIM_PAYMENT_MS` more (the whole amount, or `claim_shortfall_share` less of
it when the plan says so). `GET /claims/{claim_id}` shows where it is; the status follows
from the clock, so nothing runs in the background.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.decisions.money import CURRENCY_EXPONENTS
from services.tools.partners import http_support

MAX_CLAIM_MINOR = 10**12
REJECTION_REASONS = ("NOT_OUR_DAMAGE", "PACKAGING_INSUFFICIENT", "CLAIM_TOO_LATE")


@dataclass(frozen=True)
class ClaimRequest:
    claim_id: str
    return_id: str
    amount_minor: int
    currency: str
    tracking_number: str
    reason: str


@dataclass
class Claim:
    request: ClaimRequest
    fingerprint: str
    filed_at: int
    decided_at: int
    paid_at: int | None  # None: rejected
    paid_minor: int
    rejection_reason: str | None

    def status(self, now_ms: int) -> str:
        if now_ms < self.decided_at:
            return "filed"
        if self.paid_at is None:
            return "rejected"
        return "paid" if now_ms >= self.paid_at else "accepted"

    def to_json(self, now_ms: int) -> dict[str, Any]:
        status = self.status(now_ms)
        return {
            "claim_id": self.request.claim_id,
            "return_id": self.request.return_id,
            "amount_minor": self.request.amount_minor,
            "currency": self.request.currency,
            "tracking_number": self.request.tracking_number,
            "reason": self.request.reason,
            "status": status,
            "filed_at": self.filed_at,
            "decided_at": self.decided_at if status != "filed" else None,
            "rejection_reason": self.rejection_reason if status == "rejected" else None,
            "paid_minor": self.paid_minor if status == "paid" else 0,
            "paid_at": self.paid_at if status == "paid" else None,
        }


def claim_request(payload: Mapping[str, Any]) -> ClaimRequest:
    """A POST /claims body; an ApiError (422) names the wrong field."""
    currency = http_support.text_field(payload, "currency")
    if currency not in CURRENCY_EXPONENTS:
        raise http_support.invalid_field("currency", f"{currency!r} is not an ISO 4217 code")
    tracking = payload.get("tracking_number", "")
    reason = payload.get("reason", "DAMAGED_IN_TRANSIT")
    if not isinstance(tracking, str) or not isinstance(reason, str):
        raise http_support.invalid_field("tracking_number", "must be a string")
    return ClaimRequest(
        claim_id=http_support.text_field(payload, "claim_id"),
        return_id=http_support.text_field(payload, "return_id"),
        amount_minor=http_support.whole_number_field(
            payload, "amount_minor", minimum=1, maximum=MAX_CLAIM_MINOR
        ),
        currency=currency,
        tracking_number=tracking,
        reason=reason,
    )


@dataclass(frozen=True)
class ClaimTerms:
    decision_ms: int = 2_000
    payment_ms: int = 3_000


class ClaimsDesk:
    def __init__(self, terms: ClaimTerms) -> None:
        self.terms = terms
        self.claims: dict[str, Claim] = {}

    def file(
        self,
        wanted: ClaimRequest,
        fingerprint: str,
        now_ms: int,
        rejected: bool,
        shortfall_share: float,
        reason_draw: int,
    ) -> tuple[Claim, bool]:
        """(the claim, whether it is new); a claim id filed before with another body: 409."""
        existing = self.claims.get(wanted.claim_id)
        if existing is not None:
            if existing.fingerprint != fingerprint:
                raise http_support.ApiError(
                    409, "claim_id_reused", f"claim {wanted.claim_id} was filed with another body"
                )
            return existing, False
        decided_at = now_ms + self.terms.decision_ms
        paid = wanted.amount_minor - int(wanted.amount_minor * shortfall_share)
        claim = Claim(
            wanted,
            fingerprint,
            now_ms,
            decided_at,
            None if rejected else decided_at + self.terms.payment_ms,
            0 if rejected else paid,
            REJECTION_REASONS[reason_draw % len(REJECTION_REASONS)] if rejected else None,
        )
        self.claims[wanted.claim_id] = claim
        return claim, True
