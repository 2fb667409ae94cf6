"""Which input offsets may be committed: the contiguous prefix of records whose effects are
done (pure bookkeeping, no I/O).

Records of one partition are handled concurrently when their keys differ, so they finish
out of order; an offset is committable only once it and every record fetched before it
are done, whatever their keys.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class PartitionProgress:
    """One input partition: the records fetched and not yet passed by the committable
    position, and which of them are done."""

    waiting: deque[int] = field(default_factory=deque)  # fetched, in offset order
    finished: set[int] = field(default_factory=set)  # done, not yet at the front
    position: int | None = None  # next offset to read once everything before is done

    def fetched(self, offset: int) -> None:
        if self.waiting and offset <= self.waiting[-1]:
            raise ValueError(f"offset {offset} fetched after {self.waiting[-1]}")
        self.waiting.append(offset)

    def done(self, offset: int) -> None:
        if not self.waiting or offset < self.waiting[0]:
            raise ValueError(f"offset {offset} was not fetched or is done already")
        if offset != self.waiting[0]:
            self.finished.add(offset)
            return
        self.waiting.popleft()
        self.position = offset + 1
        while self.waiting and self.waiting[0] in self.finished:
            first = self.waiting.popleft()
            self.finished.discard(first)
            self.position = first + 1

    @property
    def outstanding(self) -> int:
        return len(self.waiting)


@dataclass
class OffsetProgress:
    """Every assigned input partition's progress, keyed by (topic, partition)."""

    partitions: dict[tuple[str, int], PartitionProgress] = field(default_factory=dict)

    def fetched(self, topic: str, partition: int, offset: int) -> None:
        self.partitions.setdefault((topic, partition), PartitionProgress()).fetched(offset)

    def done(self, topic: str, partition: int, offset: int) -> None:
        self.partitions[(topic, partition)].done(offset)

    def committable(self) -> dict[tuple[str, int], int]:
        return {
            tp: progress.position
            for tp, progress in self.partitions.items()
            if progress.position is not None
        }

    def outstanding(self, partition: int | None = None) -> int:
        return sum(
            progress.outstanding
            for (_, number), progress in self.partitions.items()
            if partition is None or number == partition
        )

    def forget(self, partitions: set[int]) -> None:
        for tp in [tp for tp in self.partitions if tp[1] in partitions]:
            del self.partitions[tp]
