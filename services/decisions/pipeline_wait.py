"""How long a return taken now would wait in the queues of the services it passes (pure):
the front door's admission measure (decisions/admission.py).

Sampled every second, per consumer group of the pipeline (coordinator, pickup, inspection,
intake, refund), over the input partitions on a return's path: the records written there
(end offsets) and the records the group has handled (the done prefixes it signals every
second, engine/handled_signal.py). Per part (a group's inputs; the entry topic, where a
return starts, a part of its own):

- queued = written − handled, with `written` as it was SIGNAL_LAG_MS before the sample
  (the newest sample at least that old): a handled position is committed once a second,
  so records written since it was are not a queue. Counted, they made a floor of ~0.5 s
  of each group's input × its visits: 2–10 s in all at 120 returns/s, and half the
  returns of a 120/s soak were refused;
- its rate: records handled per second over the last `rate_window_ms`, at least
  `min_rate` (a group idle or starting handled few, which says nothing of how fast it
  can: without a floor a trickle of 3 records at 0.5/s would read as a 6 s queue);
- its visits: records written there per return started (the entry part's handled
  records) over the last `visits_window_ms`, at most MAX_VISITS, and 1 over fewer than
  MIN_ENTRIES started returns (the coordinator sees a return ~5 times after its request:
  each step's reply); the entry part: 1;
- its wait: visits × queued ÷ rate.

The pipeline's wait is the sum over the parts: a return passes them one after another.
Admission reads its mean over the last SMOOTHING_MS (`RecentMean`): a group handles its
input in batches and signals once a second, so one sample swings between 0 and a batch's
worth of wait (seen with 2 instances a group at 4×: 0, 13 s, 0 within 3 s, each instance
reading it differently); on one sample the door took every return half the time.
Why not the age of the oldest record not handled: it grows one second per second, while at
4× the sustainable offer the work queued grows by ~4 s per second; by the time an age
limit of 10 s trips, ~40 s of work was taken (61.6 % of the accepted returns finished
within 30 s in `make bench`). Queued ÷ rate sees that within a second or two. Why every
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
# visits are measured over at least this many started returns (fewer: 1), at most MAX_VISITS
MIN_ENTRIES = 100
MAX_VISITS = 20.0
SMOOTHING_MS = 5_000  # the window of the mean admission reads


@dataclass(frozen=True)
class Partition:
    written: int  # the partition's end offset
    handled: int  # the group's done prefix there


# group → (topic, partition) → what was written there and what the group handled
Groups = dict[str, dict[tuple[str, int], Partition]]


@dataclass(frozen=True)
class _Sample:
    at_ms: int
    groups: Groups


class PipelineWait:
    """Samples of every group's partitions over time (pure); `seconds()` reads the last
    one. `entry`: the group and topic where a return starts (the coordinator's
    returns.events); its queue is a part of its own, drained at the rate that group takes
    new returns, which it pauses while it is busy (engine/consume_loop.py, admission
    topics): counted with the group's other inputs, a queue of new returns drained at
    ~170/s read as drained at the ~1,000/s the coordinator handled replies, and at 4× a
    third of the accepted returns took over 30 s."""

    def __init__(
        self,
        entry: tuple[str, str],
        rate_window_ms: int = RATE_WINDOW_MS,
        visits_window_ms: int = VISITS_WINDOW_MS,
        min_rate: float = MIN_RATE,
        signal_lag_ms: int = SIGNAL_LAG_MS,
    ) -> None:
        self.entry = entry
        self.signal_lag_ms = signal_lag_ms
        self.rate_window_ms = rate_window_ms
        self.visits_window_ms = visits_window_ms
        self.min_rate = min_rate
        self.samples: deque[_Sample] = deque()

    def add(self, now_ms: int, groups: Groups) -> None:
        """A sample of each group's partitions (compared with an earlier sample, only
        partitions in both count: one that appears, with all its history, is no burst)."""
        self.samples.append(_Sample(now_ms, groups))
        keep_from = now_ms - max(self.rate_window_ms, self.visits_window_ms, self.signal_lag_ms)
        while len(self.samples) > 2 and self.samples[1].at_ms <= keep_from:
            self.samples.popleft()

    def by_part(self) -> dict[str, float]:
        """The wait of each part, seconds: "<group>" for a group's inputs, and
        "<group>:<topic>" for the entry (none before the first sample)."""
        if not self.samples:
            return {}
        last = self.samples[-1]
        signalled = self._base(last.at_ms - self.signal_lag_ms)
        rate_base = self._base(last.at_ms - self.rate_window_ms)
        visits_base = self._base(last.at_ms - self.visits_window_ms)
        started = _change(self._entry_of(visits_base), self._entry_of(last), "handled")
        waits = {}
        for name in last.groups:
            for part, keys in self._parts(name, last).items():
                queued = sum(
                    max(0, _at(signalled, name, key, last).written - _at(last, name, key).handled)
                    for key in keys
                )
                if not queued:
                    waits[part] = 0.0
                    continue
                rate = self._rate(name, keys, rate_base, last)
                visits = (
                    1.0 if ":" in part else self._visits(name, keys, visits_base, last, started)
                )
                waits[part] = visits * queued / rate
        return waits

    def seconds(self) -> float:
        """The wait a return taken now is expected to see in the queues, seconds."""
        return sum(self.by_part().values())

    def _parts(self, name: str, sample: _Sample) -> dict[str, list[tuple[str, int]]]:
        group, topic = self.entry
        parts: dict[str, list[tuple[str, int]]] = {}
        for key in sample.groups[name]:
            part = f"{name}:{topic}" if name == group and key[0] == topic else name
            parts.setdefault(part, []).append(key)
        return parts

    def _entry_of(self, sample: _Sample) -> dict[tuple[str, int], Partition]:
        group, topic = self.entry
        return {k: p for k, p in sample.groups.get(group, {}).items() if k[0] == topic}

    def _base(self, since_ms: int) -> _Sample:
        """The newest sample at or before `since_ms` (the oldest kept if none is)."""
        base = self.samples[0]
        for sample in self.samples:
            if sample.at_ms > since_ms:
                break
            base = sample
        return base

    def _rate(self, name: str, keys: list[tuple[str, int]], base: _Sample, last: _Sample) -> float:
        elapsed_s = (last.at_ms - base.at_ms) / 1000
        if elapsed_s <= 0:
            return self.min_rate
        handled = _change(_only(base, name, keys), _only(last, name, keys), "handled")
        return max(self.min_rate, handled / elapsed_s)

    def _visits(
        self, name: str, keys: list[tuple[str, int]], base: _Sample, last: _Sample, started: int
    ) -> float:
        """Records written to these inputs per return started (the entry group's handled
        records: under overload returns are started at the rate the loop finishes them,
        while new ones are written at the rate they were taken)."""
        if started < MIN_ENTRIES:
            return 1.0
        written = _change(_only(base, name, keys), _only(last, name, keys), "written")
        return min(MAX_VISITS, written / started)


def _at(
    sample: _Sample, name: str, key: tuple[str, int], fallback: _Sample | None = None
) -> Partition:
    found = sample.groups.get(name, {}).get(key)
    if found is None:
        assert fallback is not None
        return fallback.groups[name][key]
    return found


def _only(
    sample: _Sample, name: str, keys: list[tuple[str, int]]
) -> dict[tuple[str, int], Partition]:
    partitions = sample.groups.get(name, {})
    return {key: partitions[key] for key in keys if key in partitions}


def _change(
    before: dict[tuple[str, int], Partition], after: dict[tuple[str, int], Partition], field: str
) -> int:
    """How much `field` grew over the partitions in both (a partition moved back: 0)."""
    return sum(
        max(0, getattr(after[key], field) - getattr(before[key], field))
        for key in before.keys() & after.keys()
    )


class RecentMean:
    """The mean of the values added over the last `window_ms` (pure): what admission
    reads of the pipeline's wait, sampled every second."""

    def __init__(self, window_ms: int = SMOOTHING_MS) -> None:
        self.window_ms = window_ms
        self.values: deque[tuple[int, float]] = deque()

    def add(self, now_ms: int, value: float) -> None:
        self.values.append((now_ms, value))
        while self.values[0][0] <= now_ms - self.window_ms:
            self.values.popleft()

    def mean(self) -> float | None:
        """None before the first value."""
        if not self.values:
            return None
        return sum(value for _, value in self.values) / len(self.values)
