"""Which events a buyer or a seller is told about, and the facts the message shows (pure).

A notice's key is the event's id and the recipient: the same event delivered twice is the
same notice (the outbox keeps it once, the provider's Idempotency-Key is the key). Facts
are short display values only: no bank account, address or name ever leaves here (the
provider reaches a recipient by id).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

BUYER = "buyer"
SELLER = "seller"
RECIPIENTS = (BUYER, SELLER)

# milestone -> who is told
MILESTONES: dict[str, tuple[str, ...]] = {
    "accepted": (BUYER, SELLER),
    "rejected": (BUYER,),
    "cancelled": (BUYER, SELLER),
    "pickup_booked": (BUYER,),
    "pickup_failed": (BUYER,),
    "pickup_rescheduled": (BUYER,),
    "drop_off_booked": (BUYER,),
    "inspected": (BUYER, SELLER),
    "held": (BUYER,),
    "bank_account_needed": (BUYER,),
    "bank_account_changed": (BUYER,),
    "refunded": (BUYER,),
    "disputed": (BUYER, SELLER),
    "decided": (BUYER, SELLER),
    "closed": (BUYER, SELLER),
}
# the events a return's notifier needs to know its recipients and their market
CONTEXT_EVENTS = ("ReturnAccepted", "ReturnRejected")


@dataclass(frozen=True)
class Notice:
    key: str  # event id + recipient: the provider's Idempotency-Key
    milestone: str
    recipient: str  # buyer | seller
    facts: dict[str, str]
    at_ms: int


def _day(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def _window(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _amount(money: Mapping[str, Any] | None) -> tuple[int, str]:
    if not isinstance(money, Mapping):
        return 0, ""
    return int(money.get("amount_minor") or 0), str(money.get("currency") or "")


def milestone_of(name: str, record: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The milestone an event is, with its facts (raw: money as minor units and currency,
    times in ms; message_texts.py shows them), or None for an event nobody is told of."""
    if name == "ReturnAccepted":
        return "accepted", {"order_ref": record.get("requested", {}).get("order_ref", "")}
    if name == "ReturnRejected":
        return "rejected", {"reason": str(record.get("detail") or record.get("rejection_code"))}
    if name == "ReturnCancelled":
        return "cancelled", {"reason": str(record.get("reason") or "")}
    if name == "PickupScheduled":
        return "pickup_booked", {
            "carrier": str(record.get("carrier") or ""),
            "tracking_number": str(record.get("tracking_number") or ""),
            "window_start": _window(record.get("window_start")),
            "window_end": _window(record.get("window_end")),
        }
    if name == "PickupRescheduled" and record.get("outcome") == "rescheduled":
        return "pickup_rescheduled", {
            "window_start": _window(record.get("window_start")),
            "window_end": _window(record.get("window_end")),
        }
    if name == "DropOffBooked" and record.get("outcome") == "booked":
        return "drop_off_booked", {
            "point_id": str(record.get("point_id") or ""),
            "drop_off_code": str(record.get("drop_off_code") or ""),
        }
    if name == "PickupAttemptFailed":
        return "pickup_failed", {
            "attempt_no": str(record.get("attempt_no") or ""),
            "reason": str(record.get("failure_reason") or ""),
        }
    if name == "InspectionRecorded":
        items = record.get("items") or []
        grades = sorted({str(item.get("grade")) for item in items if item.get("grade")})
        return "inspected", {"items": str(len(items)), "grades": ", ".join(grades)}
    if name == "RiskDecided" and record.get("outcome") == "hold":
        return "held", {"review_by": _day(record.get("review_deadline_at"))}
    if name == "BuyerDetailsRequested":
        return "bank_account_needed", {"deadline": _day(record.get("deadline_at"))}
    if name == "BuyerDetailsProvided":
        number = str((record.get("refund_account") or {}).get("number") or "")
        return "bank_account_changed", {"account_ends": number[-4:]}
    if name == "RefundIssued":
        amount, currency = _amount(record.get("amount"))
        method = record.get("method")
        return "refunded", {"amount_minor": amount, "currency": currency, "method": str(method)}
    if name == "DisputeOpened":
        return "disputed", {"dispute_id": str(record.get("dispute_id") or "")}
    if name == "DisputeDecided":
        amount, currency = _amount(record.get("refund"))
        return "decided", {
            "decision": str(record.get("decision") or ""),
            "amount_minor": amount,
            "currency": currency,
        }
    if name == "ReturnCompleted":
        amount, currency = _amount(record.get("refunded"))
        return "closed", {"outcome": "completed", "amount_minor": amount, "currency": currency}
    if name == "ReturnFailed":
        return "closed", {"outcome": str(record.get("outcome") or "failed").lower()}
    return None


def notices_of(name: str, record: Mapping[str, Any]) -> list[Notice]:
    """One notice per recipient of the event's milestone (none for other events)."""
    found = milestone_of(name, record)
    if found is None:
        return []
    milestone, facts = found
    envelope = record["envelope"]
    return [
        Notice(
            f"{envelope['event_id']}:{recipient}",
            milestone,
            recipient,
            {
                key: str(value) if not isinstance(value, int) else value
                for key, value in facts.items()
            },
            int(envelope["occurred_at"]),
        )
        for recipient in MILESTONES[milestone]
    ]
