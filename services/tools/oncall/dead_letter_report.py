"""What the dead-letter topics hold, for a person on call (pure: records in, report out).

`summarise` groups dead letters by original topic and reason with counts, attempts and age;
`describe` shows one dead letter: every header, and the payload decoded to JSON when the
codec can read it (else why not, and the first bytes in hex).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

HEX_PREVIEW_BYTES = 64


@dataclass(frozen=True)
class DeadLetter:
    topic: str  # the .dlq topic
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str, default: str = "") -> str:
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace")
        return default

    @property
    def original_topic(self) -> str:
        return self.header("dlq.original.topic") or self.topic.removesuffix(".dlq")

    @property
    def reason(self) -> str:
        return self.header("dlq.error.reason") or self.header("dlq.error.class") or "unknown"

    @property
    def attempt(self) -> int:
        text = self.header("dlq.attempt", "1")
        return int(text) if text.isdigit() else 1


def summarise(
    letters: Iterable[DeadLetter], now_ms: int, redriven: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Groups by (original topic, reason), largest first: count, how many were redriven
    already (`redriven`: "topic/partition/offset" of letters the audit trail says were sent
    back), highest attempt, services that gave up, oldest and newest age in seconds, and a
    sample's coordinates to `show`."""
    groups: dict[tuple[str, str], list[DeadLetter]] = {}
    for letter in letters:
        groups.setdefault((letter.original_topic, letter.reason), []).append(letter)
    rows = []
    for (topic, reason), members in groups.items():
        oldest = min(members, key=lambda m: m.timestamp_ms)
        newest = max(m.timestamp_ms for m in members)
        rows.append(
            {
                "original_topic": topic,
                "reason": reason,
                "count": len(members),
                "redriven": sum(f"{m.topic}/{m.partition}/{m.offset}" in redriven for m in members),
                "max_attempt": max(m.attempt for m in members),
                "services": sorted({m.header("dlq.service") for m in members} - {""}),
                "oldest_age_s": max(0, (now_ms - oldest.timestamp_ms) // 1000),
                "newest_age_s": max(0, (now_ms - newest) // 1000),
                "sample": {
                    "topic": oldest.topic,
                    "partition": oldest.partition,
                    "offset": oldest.offset,
                    "message": oldest.header("dlq.error.message")[:200],
                },
            }
        )
    rows.sort(key=lambda row: (-row["count"], row["original_topic"], row["reason"]))
    total = sum(row["count"] for row in rows)
    waiting = total - sum(row["redriven"] for row in rows)
    return {"total": total, "not_redriven": waiting, "groups": rows}


def describe(letter: DeadLetter, decode: Callable[[bytes], tuple[str, dict[str, Any]]]) -> dict:
    """One dead letter; `decode` turns bytes into (record name, record) or raises."""
    payload: dict[str, Any]
    value = letter.value or b""
    try:
        name, record = decode(value)
        payload = {"decoded": True, "event_type": name, "record": record}
    except Exception as exc:  # the reason it is a dead letter, often
        payload = {
            "decoded": False,
            "why_not": f"{type(exc).__name__}: {exc}"[:300],
            "bytes": len(value),
            "hex_preview": value[:HEX_PREVIEW_BYTES].hex(),
        }
    return {
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "timestamp_ms": letter.timestamp_ms,
        "key": (letter.key or b"").decode("utf-8", "replace"),
        "original_topic": letter.original_topic,
        "reason": letter.reason,
        "attempt": letter.attempt,
        "headers": {k: v.decode("utf-8", "replace") for k, v in letter.headers},
        "payload": payload,
    }
