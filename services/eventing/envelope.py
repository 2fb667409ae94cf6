"""The common envelope every command and event carries (a fresh id and the clock where the
caller gives none), and the checks consumers apply to it."""

from __future__ import annotations

import time
import uuid
from typing import Any

from services.decisions.event_ids import deterministic_event_id, envelope_of


class EnvelopeError(ValueError):
    """The record decoded but its envelope breaks the contract (wrong type, bad id, no return)."""

    reason = "invalid-envelope"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


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
    return envelope_of(
        event_type,
        return_id,
        producer,
        event_id=event_id,
        occurred_at=now_ms() if occurred_at is None else occurred_at,
        correlation_id=correlation_id,
        causation_id=causation_id,
        attempt=attempt,
    )


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
