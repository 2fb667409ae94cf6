"""Refunds as the PSP double keeps them (pure; no I/O): statuses, payment methods, a refund
request and its record, and the instalment plan of a BNPL order."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from services.tools.partners import bnpl_schedule
from services.tools.partners.http_support import now_ms

SERVICE_NAME = "psp"  # also the provider of ledger lines written before `provider` existed

# refund statuses; pending and succeeded refunds have moved (or committed) money
SUCCEEDED = "succeeded"
PENDING = "pending"
DECLINED = "declined"
VOIDED = "voided"
FAILED = "failed"  # was pending, then the bank sent the money back: nothing moved
MONEY_MOVING = frozenset({SUCCEEDED, PENDING})
ENDED_FROM_PENDING = frozenset({SUCCEEDED, FAILED})  # with a settles_at: a webhook is due
SETTLEMENT_FAILURE_CODE = "account_closed"
BNPL_OVER_REFUND_CODE = "refund_exceeds_capture"

# payment methods (accepted in any case, kept upper-case)
CARD = "CARD"
EWALLET = "EWALLET"
BNPL = "BNPL"
DIRECT_DEBIT = "DIRECT_DEBIT"
BANK_TRANSFER = "BANK_TRANSFER"
STORE_CREDIT = "STORE_CREDIT"
METHODS = (CARD, EWALLET, BNPL, DIRECT_DEBIT, BANK_TRANSFER, STORE_CREDIT)
TRANSFERS = frozenset({DIRECT_DEBIT, BANK_TRANSFER})  # always pending, settle in "days"


@dataclass(frozen=True)
class RefundRequest:
    return_id: str
    amount_minor: int
    currency: str
    method: str  # one of METHODS
    reference: str | None
    bank_account: dict[str, str] | None = None  # {"holder", "number", "bank_code"}
    order_ref: str | None = None  # BNPL: the order whose plan the refund reduces
    order_paid_minor: int | None = None  # BNPL: the order's total, to plan its instalments


@dataclass
class Refund:
    refund_id: str
    idempotency_key: str
    request_fingerprint: str
    return_id: str
    amount_minor: int
    currency: str
    method: str
    reference: str | None
    status: str  # succeeded | pending | declined | voided | failed
    decline_code: str | None
    created_at: int
    updated_at: int
    # defaults: ledger lines written before these fields existed still load
    provider: str = SERVICE_NAME
    settles_at: int | None = None  # set when the refund was pending (kept once it ended)
    bank_account: dict[str, str] | None = None  # the number masked but for its last 4
    order_ref: str | None = None
    order_paid_minor: int | None = None
    schedule: list[dict[str, Any]] | None = None  # BNPL: the order's plan after this refund
    refunded_to_buyer_minor: int | None = None  # BNPL: the part paid back to the buyer
    webhook_delivered: bool = False  # its settlement webhook was acknowledged with a 2xx

    def to_json(self) -> dict[str, Any]:
        """What callers see: everything but the request fingerprint, unset BNPL/bank details,
        and `webhook_delivered` unless the refund was pending (only those send webhooks);
        `provider`, `method` and `settles_at` are always there."""
        public = asdict(self)
        del public["request_fingerprint"]
        for optional in OPTIONAL_FIELDS:
            if public[optional] is None:
                del public[optional]
        if self.settles_at is None:
            del public["webhook_delivered"]
        return public

    def webhook_json(self) -> dict[str, Any]:
        """The refund as a settlement webhook carries it (the same bytes on every re-send)."""
        public = self.to_json()
        public.pop("webhook_delivered", None)
        return public

    @property
    def webhook_due(self) -> bool:
        """It was pending and has ended (succeeded or failed): the receiver must hear."""
        return self.settles_at is not None and self.status in ENDED_FROM_PENDING

    @property
    def webhook_id(self) -> str:
        return f"wh_{self.refund_id}_{self.status}"

    def change_status(self, status: str) -> None:
        self.status = status
        self.updated_at = now_ms()


OPTIONAL_FIELDS = (
    "bank_account",
    "order_ref",
    "order_paid_minor",
    "schedule",
    "refunded_to_buyer_minor",
)


@dataclass
class BnplOrder:
    """The instalment plan of one BNPL order, as its refunds so far have left it."""

    order_paid_minor: int
    schedule: bnpl_schedule.Schedule
    refunded_minor: int = 0  # sum of the order's refunds so far

    @classmethod
    def first_refund_at(cls, order_paid_minor: int, at_ms: int) -> BnplOrder:
        """The plan as the order was paid: 4 instalments (fewer for a tiny total), monthly."""
        instalments = min(bnpl_schedule.DEFAULT_INSTALMENTS, order_paid_minor)
        return cls(
            order_paid_minor,
            bnpl_schedule.plan(order_paid_minor, instalments, first_due_at_ms=at_ms),
        )

    def can_refund(self, amount_minor: int) -> bool:
        """Never more back in total than the buyer paid for the order."""
        return self.refunded_minor + amount_minor <= self.order_paid_minor

    def refund(self, amount_minor: int) -> int:
        """Apply one refund; what of it goes back to the buyer."""
        self.schedule, to_buyer = bnpl_schedule.apply_refund(self.schedule, amount_minor)
        self.refunded_minor += amount_minor
        return to_buyer

    def schedule_json(self) -> list[dict[str, Any]]:
        return [instalment.to_json() for instalment in self.schedule]
