"""Detects input records the stream framework skipped, so the consume loop reads them again.

Seen in the chaos run: around a rebalance, faust-streaming 0.15.3 dropped records it had
already fetched and went on from later offsets (the coordinator never saw a PickupCompleted
at offset 471 of boomerang.pickup.events-3 but processed offset 587). Our input topics are
delete-policy and written without transactions, so their offsets are contiguous: a jump
forward means records were skipped. The loop then seeks the partition back to the first
missing offset and skips what arrives early; the skipped records come again. A jump up to the
group's start is not a gap (a restarted process first reads from the earliest offset, then
the framework seeks to where the group had got). The start of a partition is the group's
committed offset read from the broker at the assignment, or the log start when the group has
none: Faust's own record of it says None for "never committed" and for 0 alike, which hid
dropped first records (a 3-node chaos run lost offsets 0-5 of a partition, and a replay from
offset 0 lost them again). Offsets below
what this process already handled are skipped (faust re-delivers after its own seeks).
Reading a record twice is harmless: every consumer is idempotent. Pure bookkeeping.

Faust does not commit our input topics (they are declared with acks off): around the same
rebalances it recorded skipped offsets as "gaps" and committed past them, so a restart lost
them for good (a replay after a rewind committed to the end having handled 792 of 1,800
records). The consume loop commits `committable()` itself: the offset after the last record
handled with nothing missing before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

RESEEK_AFTER_S = 10.0
STALL_AFTER_S = 10.0


class Verdict(Enum):
    PROCESS = "process"
    SKIP = "skip"  # handled already, or ahead of a gap being re-read
    SEEK = "seek"  # a gap: seek back to `expected(tp)`


@dataclass
class OffsetGuard:
    _expected: dict[Any, int] = field(default_factory=dict)
    _seek_sent_at: dict[Any, float] = field(default_factory=dict)
    _last_activity: dict[Any, float] = field(default_factory=dict)
    _start: dict[Any, int] = field(default_factory=dict)
    _not_durable_from: dict[Any, int] = field(default_factory=dict)  # handled, effects unacked
    gaps_seen: int = 0
    stalls_seen: int = 0

    def knows_start(self, tp: Any) -> bool:
        return tp in self._start

    def start_at(self, tp: Any, offset: int) -> None:
        """Where the group resumes `tp` since its assignment: its committed offset, or the
        log start when it has none."""
        self._start[tp] = offset

    def check(self, tp: Any, offset: int, now_s: float) -> Verdict:
        self._last_activity[tp] = now_s
        expected = self._expected.get(tp)
        start = self._start.get(tp)
        if expected is None:
            if start is not None and offset > start:
                # The first record since the assignment is past the group's start: the
                # framework dropped the records in between (seen: the first records of a
                # partition, timer events, were never handled).
                self._expected[tp] = start
                return self._seek(tp, now_s)
            return Verdict.PROCESS
        if offset == expected:
            return Verdict.PROCESS
        if offset < expected:
            return Verdict.SKIP
        if start is not None and offset <= start:
            return Verdict.PROCESS  # the framework resuming at the group's start
        return self._seek(tp, now_s)

    def _seek(self, tp: Any, now_s: float) -> Verdict:
        sent = self._seek_sent_at.get(tp)
        if sent is not None and now_s - sent < RESEEK_AFTER_S:
            return Verdict.SKIP
        self._seek_sent_at[tp] = now_s
        self.gaps_seen += 1
        return Verdict.SEEK

    def processed(self, tp: Any, offset: int) -> None:
        """Handled, and its effects are on the broker."""
        self.handled(tp, offset)
        self.durable(tp, offset)

    def handled(self, tp: Any, offset: int) -> None:
        """Handled; its effects are being written (not committable until `durable`)."""
        self._expected[tp] = offset + 1
        self._seek_sent_at.pop(tp, None)
        self._not_durable_from.setdefault(tp, offset)

    def durable(self, tp: Any, offset: int) -> None:
        """The effects of `offset` (and, acknowledged in order, of all before it) are on
        the broker."""
        if offset + 1 >= self._expected.get(tp, 0):
            self._not_durable_from.pop(tp, None)
        elif tp in self._not_durable_from:
            self._not_durable_from[tp] = offset + 1

    def expected(self, tp: Any) -> int:
        return self._expected[tp]

    def committable(self) -> dict[Any, int]:
        """Per partition, the offset after the last record handled with nothing missing
        before it and whose effects are on the broker: the only offset safe to commit."""
        return {
            tp: min(expected, self._not_durable_from.get(tp, expected))
            for tp, expected in self._expected.items()
        }

    def due_reseeks(self, now_s: float) -> dict[Any, int]:
        """Gaps whose seek brought nothing back in time (every record may have arrived,
        been skipped as early, and none came after): seek again, marked as sent now."""
        due = {
            tp: self._expected[tp]
            for tp, sent in self._seek_sent_at.items()
            if now_s - sent >= RESEEK_AFTER_S
        }
        for tp in due:
            self._seek_sent_at[tp] = now_s
        return due

    def stalled(self, tp: Any, now_s: float, end_offset: int | None) -> int | None:
        """The offset to seek to when a partition has unread records but none has arrived
        for STALL_AFTER_S (also seen: Faust fetched and dropped a partition's records and
        then fetched nothing more from it), else None."""
        position = self._expected.get(tp, self._start.get(tp))
        if position is None or end_offset is None or end_offset <= position:
            self._last_activity[tp] = now_s  # nothing unread: not stalled
            return None
        last = self._last_activity.setdefault(tp, now_s)
        if now_s - last < STALL_AFTER_S:
            return None
        self._last_activity[tp] = now_s
        self.stalls_seen += 1
        return position

    def forget(self, tp: Any) -> None:
        """The partition went to another member: what we knew of it is stale."""
        self._expected.pop(tp, None)
        self._seek_sent_at.pop(tp, None)
        self._last_activity.pop(tp, None)
        self._start.pop(tp, None)
        self._not_durable_from.pop(tp, None)
