"""The common envelope every command and event carries, and the checks consumers apply to it."""

from __future__ import annotations

import time
import uuid
from typing import Any

# Fixed namespace for deterministic event ids (uuid5): re-emitting the same effect after
# a crash yields the same event_id, so downstream dedupe recognises it.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c5b1e-4d0a-5d3e-9a51-0b0e5e6a1c42")


class EnvelopeError(ValueError):
    """The record decoded but its envelope breaks the contract (wrong type, bad id, no return)."""

    reason = "invalid-envelope"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def deterministic_event_id(*parts: str) -> str:
    """Same parts → same id: `deterministic_event_id(return_id, "refund", "issued")`."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, "/".join(parts)))


def new_envelope(
    event_type: str,
    return_id: str,
    producer: str,
    *,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    attempt: int = 1,
    event_id: str | None = None,
    occurred_at: int | None = None,
) -> dict[str, Any]:
    event_id = event_id or str(uuid.uuid4())
    return {
        "event_id": event_id,
        "event_type": event_type,
        "return_id": return_id,
        "correlation_id": correlation_id or event_id,
        "causation_id": causation_id,
        "occurred_at": now_ms() if occurred_at is None else occurred_at,
        "producer": producer,
        "attempt": attempt,
    }


def reply_record(
    command: dict[str, Any], name: str, body: dict[str, Any], producer: str, *id_parts: str
) -> dict[str, Any]:
    """An event answering `command`: same return and correlation, caused by it, its id derived
    from the command's (and `id_parts`), so answering one command twice yields one event."""
    envelope = command["envelope"]
    return {
        "envelope": new_envelope(
            name,
            envelope["return_id"],
            producer,
            correlation_id=envelope["correlation_id"],
            causation_id=envelope["event_id"],
            event_id=deterministic_event_id(envelope["event_id"], name, *id_parts),
        ),
        **body,
    }


def check_envelope(record_name: str, record: dict[str, Any], key: bytes | None = None) -> None:
    """Raise EnvelopeError unless the envelope is consistent with its record and Kafka key."""
    envelope = record.get("envelope") or {}
    if envelope.get("event_type") != record_name:
        raise EnvelopeError(
            f"event_type {envelope.get('event_type')!r} does not match record {record_name}"
        )
    try:
        uuid.UUID(str(envelope.get("event_id")))
    except ValueError as exc:
        raise EnvelopeError(f"event_id {envelope.get('event_id')!r} is not a UUID") from exc
    return_id = envelope.get("return_id")
    if not return_id:
        raise EnvelopeError("return_id is empty")
    if key is not None and key.decode("utf-8", "replace") != return_id:
        raise EnvelopeError(f"record key {key!r} is not the return_id {return_id!r}")
    if envelope.get("attempt", 1) < 1:
        raise EnvelopeError(f"attempt {envelope.get('attempt')} is below 1")
