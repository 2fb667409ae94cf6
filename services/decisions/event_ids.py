"""Event ids and envelopes the pure core derives: the same effect always gets the same id
(uuid5 of its parts), so re-emitting it after a crash is recognised downstream as a duplicate.
Nothing here reads a clock or draws a random id; the caller passes the time."""

from __future__ import annotations

import uuid
from typing import Any

# Fixed namespace for deterministic event ids (uuid5).
EVENT_ID_NAMESPACE = uuid.UUID("6f1c5b1e-4d0a-5d3e-9a51-0b0e5e6a1c42")


def deterministic_event_id(*parts: str) -> str:
    """Same parts → same id: `deterministic_event_id(return_id, "refund", "issued")`."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, "/".join(parts)))


def envelope_of(
    event_type: str,
    return_id: str,
    producer: str,
    *,
    event_id: str,
    occurred_at: int,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    attempt: int = 1,
) -> dict[str, Any]:
    """The envelope every command and event carries, with its id and time given."""
    return {
        "event_id": event_id,
        "event_type": event_type,
        "return_id": return_id,
        "correlation_id": correlation_id or event_id,
        "causation_id": causation_id,
        "occurred_at": occurred_at,
        "producer": producer,
        "attempt": attempt,
    }
