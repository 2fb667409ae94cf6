"""Which records an on-call command acts on (pure: options in, a predicate out).

Ranges are half-open, like Kafka's own positions: `--from-offset`/`--from-time` include
their bound, `--to-offset`/`--to-time` exclude theirs. So adjacent windows never overlap and
"stopped before offset N" resumes with "from offset N".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class SelectionError(ValueError):
    """An option that cannot select anything sensible; the message names it."""


@dataclass(frozen=True)
class RecordFacts:
    """What selection looks at in one record (decoded once by the caller)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    return_id: str | None  # None: the value could not be decoded
    event_type: str | None
    event_id: str | None


@dataclass(frozen=True)
class Selection:
    topic: str
    partitions: frozenset[int] = frozenset()  # empty: every partition
    from_offset: int | None = None
    to_offset: int | None = None
    from_time_ms: int | None = None
    to_time_ms: int | None = None
    return_ids: frozenset[str] = frozenset()
    event_types: frozenset[str] = frozenset()
    start_at: dict[int, int] = field(default_factory=dict)  # resume: partition → offset
    stop_at: dict[int, int] = field(default_factory=dict)  # resume: partition → end (excl.)
    include_replayed: bool = False  # also copies an earlier replay wrote (replay.* headers)

    def __post_init__(self) -> None:
        if self.from_offset is not None and self.from_offset < 0:
            raise SelectionError("--from-offset must be 0 or more")
        if (
            self.from_offset is not None
            and self.to_offset is not None
            and self.to_offset <= self.from_offset
        ):
            raise SelectionError("--to-offset must be after --from-offset (it is exclusive)")
        if (
            self.from_time_ms is not None
            and self.to_time_ms is not None
            and self.to_time_ms <= self.from_time_ms
        ):
            raise SelectionError("--to-time must be after --from-time (it is exclusive)")

    @property
    def filters_content(self) -> bool:
        """True when records are chosen by what they hold, not only where they are."""
        return bool(self.return_ids or self.event_types)

    def partition_wanted(self, partition: int) -> bool:
        return not self.partitions or partition in self.partitions

    def first_offset(self, partition: int, log_start: int) -> int:
        """Where reading starts in `partition` (before the time bound is applied)."""
        start = max(log_start, self.from_offset or 0)
        return max(start, self.start_at.get(partition, start))

    def matches(self, facts: RecordFacts) -> bool:
        if facts.topic != self.topic or not self.partition_wanted(facts.partition):
            return False
        if facts.offset < self.first_offset(facts.partition, 0):
            return False
        if self.to_offset is not None and facts.offset >= self.to_offset:
            return False
        if facts.offset >= self.stop_at.get(facts.partition, facts.offset + 1):
            return False
        if self.from_time_ms is not None and facts.timestamp_ms < self.from_time_ms:
            return False
        if self.to_time_ms is not None and facts.timestamp_ms >= self.to_time_ms:
            return False
        if self.return_ids and facts.return_id not in self.return_ids:
            return False
        return not self.event_types or facts.event_type in self.event_types

    def describe(self) -> dict[str, Any]:
        """The selection as it goes into an audit event and the JSON output."""
        return {
            "topic": self.topic,
            "partitions": sorted(self.partitions),
            "from_offset": self.from_offset,
            "to_offset": self.to_offset,
            "from_time_ms": self.from_time_ms,
            "to_time_ms": self.to_time_ms,
            "return_ids": sorted(self.return_ids),
            "event_types": sorted(self.event_types),
            "start_at": {str(p): o for p, o in sorted(self.start_at.items())},
            "stop_at": {str(p): o for p, o in sorted(self.stop_at.items())},
            "include_replayed": self.include_replayed,
        }


def parse_instant(text: str, option: str) -> int:
    """An ISO 8601 instant as epoch milliseconds; a time without an offset is refused
    (on call, "10:00" in whose time zone is exactly the mistake to avoid)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise SelectionError(
            f"{option}: {text!r} is not an ISO 8601 time (e.g. 2026-11-24T09:30:00Z)"
        ) from exc
    if moment.tzinfo is None:
        raise SelectionError(f"{option}: {text!r} needs a UTC offset (e.g. Z or +01:00)")
    return int(moment.astimezone(UTC).timestamp() * 1000)


_POSITION = re.compile(r"^(\d+):(\d+)$")


def parse_positions(text: str, option: str = "--start-at") -> dict[int, int]:
    """`0:120,3:77` → {0: 120, 3: 77}: where an interrupted run stopped (or its selection
    ended), per partition."""
    positions: dict[int, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        found = _POSITION.match(part)
        if not found:
            raise SelectionError(f"{option}: {part!r} is not PARTITION:OFFSET")
        positions[int(found[1])] = int(found[2])
    if not positions:
        raise SelectionError(f"{option} needs at least one PARTITION:OFFSET")
    return positions


def format_positions(positions: dict[int, int]) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(positions.items()))


_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str, option: str) -> int:
    """`90s`, `30m`, `2h`, `7d` → milliseconds."""
    found = _DURATION.match(text.strip())
    if not found:
        raise SelectionError(f"{option}: {text!r} is not a duration like 30m, 2h or 7d")
    return int(found[1]) * _UNIT_MS[found[2]]
