"""Payment providers' settlement webhooks → refund events (pure).

A pending refund ends at the provider later: `refund.settled` (the money arrived) becomes
RefundSettled, `refund.failed` (e.g. the bank sent a transfer back) becomes RefundFailed with
the decline code's next action. The event id derives from the provider and its webhook id,
so every re-delivery of one webhook is one event downstream (the saga drops the repeats).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from services.decisions.refunds.decline_codes import next_action
from services.eventing.envelope import new_envelope
from services.eventing.request_fields import Fields, invalid

WEBHOOK_NAMESPACE = uuid.UUID("0c3e5f0a-8d7b-5a41-9a0e-6f1d2b7c4e90")
WEBHOOK_TYPES = frozenset({"refund.settled", "refund.failed"})
CURRENCY = re.compile(r"[A-Z]{3}")
MAX_EPOCH_MS = 2**63 - 1
MAX_AMOUNT_MINOR = 10**12
REFUND_METHODS = frozenset(
    {"CARD", "EWALLET", "BNPL", "DIRECT_DEBIT", "BANK_TRANSFER", "VIRTUAL_ACCOUNT", "STORE_CREDIT"}
)


def provider_of(data: dict[str, Any]) -> str:
    """Read first: the signature is checked with this provider's secret."""
    fields = Fields(data)
    provider = fields.text("provider", max_len=64)
    if fields.problems:
        raise invalid(fields.problems)
    return provider


def webhook_event(data: dict[str, Any], producer: str) -> tuple[str, dict[str, Any]]:
    """Validate a webhook body; raises ApiError (422) naming every wrong field."""
    fields = Fields(data)
    webhook_id = fields.text("webhook_id", max_len=128)
    kind = fields.choice("type", WEBHOOK_TYPES)
    provider = fields.text("provider", max_len=64)
    occurred_at = fields.integer("occurred_at", minimum=0, maximum=MAX_EPOCH_MS)
    refund_data = data.get("refund")
    if not isinstance(refund_data, dict):
        fields.problem("refund", "must be a JSON object")
        raise invalid(fields.problems)
    refund = fields.nested("refund", refund_data)
    refund_id = refund.text("refund_id", max_len=128)
    return_id = refund.text("return_id", max_len=64)
    amount_minor = refund.integer("amount_minor", minimum=1, maximum=MAX_AMOUNT_MINOR)
    currency = refund.text("currency", max_len=3)
    if currency and not CURRENCY.fullmatch(currency):
        refund.problem("currency", "must be three upper-case letters (ISO 4217)")
    method = refund.choice("method", REFUND_METHODS)
    status = refund.choice("status", {"succeeded", "failed"})
    expected = "succeeded" if kind == "refund.settled" else "failed"
    if kind and status and status != expected:
        refund.problem("status", f"a {kind} webhook carries status {expected!r}")
    decline_code = refund_data.get("decline_code") or ""
    if kind == "refund.failed" and not (isinstance(decline_code, str) and decline_code):
        refund.problem("decline_code", "a failed refund names its decline code")
    if fields.problems:
        raise invalid(fields.problems)
    name = "RefundSettled" if kind == "refund.settled" else "RefundFailed"
    envelope = new_envelope(
        name,
        return_id,
        producer,
        event_id=str(uuid.uuid5(WEBHOOK_NAMESPACE, f"{provider}/{webhook_id}")),
    )
    amount = {"amount_minor": amount_minor, "currency": currency}
    if name == "RefundSettled":
        return name, {
            "envelope": envelope,
            "provider": provider,
            "provider_refund_id": refund_id,
            "amount": amount,
            "settled_at": occurred_at,
        }
    return name, {
        "envelope": envelope,
        "amount": amount,
        "method": method,
        "provider": provider,
        "idempotency_key": str(refund_data.get("idempotency_key") or ""),
        "decline_code": decline_code,
        "detail": f"{provider} reported the pending refund {refund_id} failed",
        "retryable": False,
        "next_action": str(next_action(decline_code)),
    }
