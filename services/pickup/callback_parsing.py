"""Carrier status callbacks → pickup events (pure)."""

from __future__ import annotations

import uuid
from typing import Any

from services.eventing.envelope import new_envelope
from services.eventing.request_fields import Fields, invalid

CALLBACK_NAMESPACE = uuid.UUID("4b0f3f7c-61a2-5b8e-9d1e-2a7c9e0b5d33")
MAX_EPOCH_MS = 2**63 - 1  # Avro long
STATUSES = frozenset({"attempt_failed", "rescheduled", "collected"})
EVENT_OF_STATUS = {
    "collected": "PickupCompleted",
    "attempt_failed": "PickupAttemptFailed",
    "rescheduled": "PickupRescheduled",
}
FAILURE_REASONS = frozenset({"BUYER_ABSENT", "PARCEL_NOT_READY", "ADDRESS_NOT_FOUND", "OTHER"})


def callback_event(data: dict[str, Any], producer: str) -> tuple[str, dict[str, Any]]:
    """Validate a callback body; the event id derives from callback_id, so the carrier's
    re-deliveries of one callback become one event downstream."""
    fields = Fields(data)
    callback_id = fields.text("callback_id", max_len=64)
    return_id = fields.text("return_id", max_len=64)
    booking_id = fields.text("booking_id", max_len=64)
    tracking = fields.text("tracking_number", max_len=64)
    status = fields.choice("status", STATUSES)
    occurred_at = fields.integer("occurred_at", minimum=0, maximum=MAX_EPOCH_MS)
    attempt_no = fields.integer("attempt_no", minimum=1, maximum=100)
    damage = data.get("carrier_noted_damage", False)
    if not isinstance(damage, bool):
        fields.problem("carrier_noted_damage", "must be true or false")
    weight = fields.integer("parcel_weight_grams", minimum=0, maximum=10**7, required=False)
    reason = fields.choice("reason", FAILURE_REASONS) if status == "attempt_failed" else None
    moved = status == "rescheduled"
    window_start = fields.integer("window_start", minimum=0, maximum=MAX_EPOCH_MS, required=moved)
    window_end = fields.integer("window_end", minimum=0, maximum=MAX_EPOCH_MS, required=moved)
    if fields.problems:
        raise invalid(fields.problems)
    event_id = str(uuid.uuid5(CALLBACK_NAMESPACE, callback_id))
    envelope = new_envelope(EVENT_OF_STATUS[status], return_id, producer, event_id=event_id)
    if moved:
        return "PickupRescheduled", {
            "envelope": envelope,
            "booking_id": booking_id,
            "outcome": "rescheduled",
            "proposed_by": "carrier",
            "reschedule_no": 0,
            "window_start": window_start,
            "window_end": window_end,
            "detail": f"proposed after attempt {attempt_no}",
        }
    if status == "collected":
        return "PickupCompleted", {
            "envelope": envelope,
            "booking_id": booking_id,
            "tracking_number": tracking,
            "collected_at": occurred_at,
            "carrier_noted_damage": damage,
            "parcel_weight_grams": weight,
        }
    return "PickupAttemptFailed", {
        "envelope": envelope,
        "booking_id": booking_id,
        "attempt_no": attempt_no,
        "failure_reason": reason,
        "detail": f"carrier reported {reason}",
        "retryable": True,
    }
