"""Dead-letter records: the original bytes, key and the reason, in headers a person can read.

A record that cannot be decoded or fails domain validation goes to `<topic>.dlq` with:
original topic / partition / offset / key, error class and message, the service, the attempt
and when it first failed. The consumer then moves on; nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.eventing.envelope import now_ms

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class FailedRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def dead_letter_topic_name(topic: str) -> str:
    """The DLQ of a topic (a redriven record that fails again returns to the same DLQ)."""
    return topic if topic.endswith(DLQ_SUFFIX) else topic + DLQ_SUFFIX


def _header(headers: tuple[tuple[str, bytes], ...], name: str) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def dead_letter_headers(
    record: FailedRecord, error: BaseException, service: str, attempt: int | None = None
) -> list[tuple[str, bytes]]:
    """Headers for the DLQ copy. If the record was redriven from a DLQ before, keep its origin
    and first failure time and raise the attempt count."""
    previous_attempt = _header(record.headers, "dlq.attempt")
    original_topic = _header(record.headers, "dlq.original.topic")
    first_failed = _header(record.headers, "dlq.first.failed.at")
    if attempt is None:
        attempt = int(previous_attempt) + 1 if previous_attempt else 1
    reason = getattr(error, "reason", None) or type(error).__name__
    message = str(error)[:2000]
    headers: dict[str, bytes] = {
        "dlq.original.topic": original_topic or record.topic.encode(),
        "dlq.original.partition": _header(record.headers, "dlq.original.partition")
        or str(record.partition).encode(),
        "dlq.original.offset": _header(record.headers, "dlq.original.offset")
        or str(record.offset).encode(),
        "dlq.original.key": record.key or b"",
        "dlq.error.class": type(error).__name__.encode(),
        "dlq.error.reason": str(reason).encode(),
        "dlq.error.message": message.encode("utf-8", "replace"),
        "dlq.service": service.encode(),
        "dlq.attempt": str(attempt).encode(),
        "dlq.first.failed.at": first_failed or str(now_ms()).encode(),
        "dlq.failed.at": str(now_ms()).encode(),
    }
    kept = [(k, v) for k, v in record.headers if not k.startswith("dlq.")]
    return kept + list(headers.items())


def describe_headers(headers: Any) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in headers or () if k.startswith("dlq.")}
