"""What a provider's decline code means for the return (pure).

A decline is the provider's final word for that request (its idempotency key replays it),
so nothing here retries the same request: RETRY asks again with a new key after a backoff,
FALLBACK pays by the policy's fallback method (store credit) instead, NEEDS_ATTENTION hands
the case to a person. Codes we do not know go to a person: guessing with money is worse.
"""

from __future__ import annotations

from enum import StrEnum


class NextAction(StrEnum):
    RETRY = "RETRY"
    FALLBACK = "FALLBACK"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"


DECLINE_ACTIONS: dict[str, NextAction] = {
    # the provider or the issuer had a moment: ask again later
    "do_not_honor": NextAction.RETRY,
    "processing_error": NextAction.RETRY,
    "try_again_later": NextAction.RETRY,
    "issuer_unavailable": NextAction.RETRY,
    "insufficient_merchant_balance": NextAction.RETRY,
    "rate_limited": NextAction.RETRY,
    # the original instrument cannot take money any more: the policy's fallback pays
    "account_closed": NextAction.FALLBACK,
    "card_expired": NextAction.FALLBACK,
    "card_lost_or_stolen": NextAction.FALLBACK,
    "wallet_closed": NextAction.FALLBACK,
    "bnpl_plan_closed": NextAction.FALLBACK,
    "mandate_revoked": NextAction.FALLBACK,
    "invalid_bank_account": NextAction.FALLBACK,
    "refund_window_expired": NextAction.FALLBACK,
    # a person must look before any money moves
    "fraud_suspected": NextAction.NEEDS_ATTENTION,
    "refund_exceeds_capture": NextAction.NEEDS_ATTENTION,
    "duplicate_refund": NextAction.NEEDS_ATTENTION,
    "currency_not_supported": NextAction.NEEDS_ATTENTION,
    "compliance_block": NextAction.NEEDS_ATTENTION,
}


def next_action(decline_code: str) -> NextAction:
    return DECLINE_ACTIONS.get(decline_code.strip().lower(), NextAction.NEEDS_ATTENTION)
