"""How long a return taken now would wait in the queues of the services it passes (pure):
the front door's admission measure (decisions/admission.py).

Sampled every second, per consumer group of the pipeline (coordinator, pickup, inspection,
intake, refund), over all its input partitions: the records written there (end offsets,
summed) and the records it has handled (the done prefixes it signals every second,
engine/handled_signal.py). Per group:

- queued = written − handled, with `written` as it was SIGNAL_LAG_MS before the sample
  (the newest sample at least that old): a handled position is committed once a second,
  so records written since it was are not a queue. Counted, they made a floor of ~0.5 s
  of each group's input × its visits: 2–10 s in all at 120 returns/s, and half the
  returns of a 120/s soak were refused;
- its rate: records handled per second over the last `rate_window_ms`, at least
  `min_rate` (a group idle or starting handled few, which says nothing of how fast it
  can: without a floor a trickle of 3 records at 0.5/s would read as a 6 s queue);
- its visits: records written to its inputs per record written to the entry topic
  (returns.events) over the last `visits_window_ms`, between 1 and MAX_VISITS, and 1 over
  fewer than MIN_ENTRIES new returns (the coordinator sees a return ~6 times: its request,
  then each step's reply);
- its wait: visits × queued ÷ rate.

The pipeline's wait is the sum over the groups: a return passes them one after another.
Why not the age of the oldest record not handled: it grows one second per second, while at
4× the sustainable offer the work queued grows by ~4 s per second; by the time an age
limit of 10 s trips, ~40 s of work was taken (61.6 % of the accepted returns finished
within 30 s in `make bench`). Queued ÷ rate sees that in its first sample. Why every
group: the coordinator starts returns at once and the queue forms downstream (pickup,
inspection, refund, the partner doubles, all on the same cores): measured on the
coordinator alone, a third finished within 30 s.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

RATE_WINDOW_MS = 10_000
# how old a handled position may be (engine/handled_signal.py: committed every second)
SIGNAL_LAG_MS = 1_000
VISITS_WINDOW_MS = 60_000
MIN_RATE = 50.0  # records per second a group is taken to handle at least
# visits are measured over at least this many new returns (fewer: 1), and are at most MAX_VISITS
MIN_ENTRIES = 100
MAX_VISITS = 20.0


@dataclass(frozen=True)
class Partition:
    written: int  # the partition's end offset
    handled: int  # the group's done prefix there


# group → "topic:partition" → what was written there and what the group handled
Groups = dict[str, dict[str, Partition]]


@dataclass(frozen=True)
class _Sample:
    at_ms: int
    entry_written: int
    groups: Groups


class PipelineWait:
    """Samples of every group's totals over time (pure); `seconds()` reads the last one."""

    def __init__(
        self,
        rate_window_ms: int = RATE_WINDOW_MS,
        visits_window_ms: int = VISITS_WINDOW_MS,
        min_rate: float = MIN_RATE,
        signal_lag_ms: int = SIGNAL_LAG_MS,
    ) -> None:
        self.signal_lag_ms = signal_lag_ms
        self.rate_window_ms = rate_window_ms
        self.visits_window_ms = visits_window_ms
        self.min_rate = min_rate
        self.samples: deque[_Sample] = deque()

    def add(self, now_ms: int, entry_written: int, groups: Groups) -> None:
        """A sample: the entry topic's records written in all, and each group's partitions
        (compared with an earlier sample, only partitions in both count: one that appears,
        with all its history, is not taken as a burst)."""
        self.samples.append(_Sample(now_ms, entry_written, groups))
        keep_from = now_ms - max(self.rate_window_ms, self.visits_window_ms, self.signal_lag_ms)
        while len(self.samples) > 2 and self.samples[1].at_ms <= keep_from:
            self.samples.popleft()

    def by_group(self) -> dict[str, float]:
        """Each group's share of the wait, seconds (none before the first sample)."""
        if not self.samples:
            return {}
        last = self.samples[-1]
        signalled = self._base(last.at_ms - self.signal_lag_ms)
        rate_base = self._base(last.at_ms - self.rate_window_ms)
        visits_base = self._base(last.at_ms - self.visits_window_ms)
        waits = {}
        for name, partitions in last.groups.items():
            written_then = signalled.groups.get(name, {})
            queued = sum(
                max(0, written_then.get(key, p).written - p.handled)
                for key, p in partitions.items()
            )
            if not queued:
                waits[name] = 0.0
                continue
            rate = self._rate(name, rate_base, last)
            visits = self._visits(name, visits_base, last)
            waits[name] = visits * queued / rate
        return waits

    def seconds(self) -> float:
        """The wait a return taken now is expected to see in the queues, seconds."""
        return sum(self.by_group().values())

    def _base(self, since_ms: int) -> _Sample:
        """The newest sample at or before `since_ms` (the oldest kept if none is)."""
        base = self.samples[0]
        for sample in self.samples:
            if sample.at_ms > since_ms:
                break
            base = sample
        return base

    def _rate(self, name: str, base: _Sample, last: _Sample) -> float:
        elapsed_s = (last.at_ms - base.at_ms) / 1000
        if elapsed_s <= 0:
            return self.min_rate
        handled = _change(base.groups.get(name, {}), last.groups[name], "handled")
        return max(self.min_rate, handled / elapsed_s)

    def _visits(self, name: str, base: _Sample, last: _Sample) -> float:
        entries = last.entry_written - base.entry_written
        if entries < MIN_ENTRIES:
            return 1.0
        written = _change(base.groups.get(name, {}), last.groups[name], "written")
        return min(MAX_VISITS, max(1.0, written / entries))


def _change(before: dict[str, Partition], after: dict[str, Partition], field: str) -> int:
    """How much `field` grew over the partitions in both (a partition moved back: 0)."""
    return sum(
        max(0, getattr(after[key], field) - getattr(before[key], field))
        for key in before.keys() & after.keys()
    )
