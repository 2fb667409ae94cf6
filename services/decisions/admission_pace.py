"""How many new returns per second this front door lets in (pure): the pace of admission,
adjusted from the pipeline's wait the way TCP adjusts its window (additive-ish increase,
multiplicative decrease), and spent as a token bucket.

Why on top of the early refusal (decisions/admission.py): the wait is measured from
handled positions signalled once a second and read as a 5 s mean, so it sees a queue
5–10 s after it formed and sees it gone as late. With two instances per service the
reading swung between 0 and 10–20 s on a ~10 s period, and every time it read 0 the door
took the whole offer (4× what the machine finishes) for the seconds until it saw the
queue again: 83.8 % of the accepted returns finished within 30 s. The pace turns those
swings into a slow ramp:

- the door is open (no pace) until the wait first reaches `slow_from_s`;
- then, while the wait is at or past `slow_from_s`, the pace (at first: the rate taken
  over the last `window_s`) is cut by `cut`, or by `slow_from_s` ÷ the wait when that is
  less, down to `deepest_cut` (a wait of 1.6× the mark: ×0.62), at most once per
  `cut_every_s` (a late reading must not cut again for the queue it already cut for),
  and not while the wait falls (under `falling` × what it read at the last check: the
  queue drains at this pace, and a queue taking long to drain must not starve the door);
- while the wait is below it, the pace grows by `growth` (a share of itself) per second;
- the door opens again once the pace is past `headroom` × the rate taken (plus
  `min_rate`): the offer fell below what it lets in, the pace no longer binds;
- the pace never goes below `min_rate`: a queue that is not draining because nothing
  enters is seen going down by the returns still let in.

The bucket holds at most one second of pace (`burst_s`): a return taken spends a token,
none left is a refusal with Retry-After 1 s.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class PaceSettings:
    slow_from_s: float = 2.5  # the pipeline wait at which the pace is cut
    cut: float = 0.7
    cut_every_s: float = 5.0
    deepest_cut: float = 0.5
    falling: float = 0.8  # a wait under this share of the last check's: no further cut
    growth: float = 0.04  # per second, a share of the pace
    headroom: float = 2.0
    min_rate: float = 5.0  # returns per second
    window_s: float = 5.0
    burst_s: float = 1.0
    enabled: bool = True


class AdmissionPace:
    """The pace and its token bucket; `adjust` with each reading of the wait, `take` for
    each new return (time in milliseconds, from the caller). `rate` None: open."""

    def __init__(self, settings: PaceSettings, now_ms: int) -> None:
        self.settings = settings
        self.rate: float | None = None
        self.tokens = 0.0
        self.filled_ms = now_ms
        self.adjusted_ms = now_ms
        self.cut_ms: int | None = None
        # when the wait past the mark was last checked, and what it read then
        self.checked: tuple[int, float] | None = None
        self.taken: deque[int] = deque()  # when each return of the last window was taken

    def taken_rate(self, now_ms: int) -> float:
        self._forget(now_ms)
        return len(self.taken) / self.settings.window_s

    def adjust(self, now_ms: int, wait_s: float | None) -> None:
        """A new reading of the pipeline's wait (None: not measured, the pace only grows)."""
        settings = self.settings
        elapsed_s = max(0.0, (now_ms - self.adjusted_ms) / 1000)
        self.adjusted_ms = now_ms
        taken = self.taken_rate(now_ms)
        every_ms = settings.cut_every_s * 1000
        if settings.enabled and wait_s is not None and wait_s >= settings.slow_from_s:
            checked = self.checked
            if checked is not None and now_ms - checked[0] < every_ms:
                return
            self.checked = (now_ms, wait_s)
            if checked is not None and wait_s < checked[1] * settings.falling:
                return  # the queue drains at this pace: hold it
            if self.cut_ms is not None and now_ms - self.cut_ms < every_ms:
                return
            self.cut_ms = now_ms
            # paced: the pace itself (what was taken also fell by the early refusals,
            # decisions/admission.py: cut from it, the two spiralled down to min_rate)
            base = taken if self.rate is None else self.rate
            factor = max(settings.deepest_cut, min(settings.cut, settings.slow_from_s / wait_s))
            self.rate = max(settings.min_rate, factor * base)
            self.tokens = min(self.tokens, self.rate * settings.burst_s)
            self.filled_ms = now_ms
            return
        if wait_s is not None:
            self.checked = None  # under the mark: the next reading past it is a new queue
        if self.rate is not None:
            self.rate *= (1 + settings.growth) ** elapsed_s
            if self.rate >= settings.headroom * taken + settings.min_rate:
                self.rate = None

    def take(self, now_ms: int) -> bool:
        """True to let a new return in (a token spent when paced); False: over the pace."""
        self._forget(now_ms)
        if self.rate is not None:
            self._fill(now_ms, self.rate)
            if self.tokens < 1:
                return False
            self.tokens -= 1
        self.taken.append(now_ms)
        return True

    def _fill(self, now_ms: int, rate: float) -> None:
        elapsed_s = max(0.0, (now_ms - self.filled_ms) / 1000)
        self.filled_ms = max(self.filled_ms, now_ms)
        self.tokens = min(rate * self.settings.burst_s, self.tokens + rate * elapsed_s)

    def _forget(self, now_ms: int) -> None:
        since_ms = now_ms - self.settings.window_s * 1000
        while self.taken and self.taken[0] <= since_ms:
            self.taken.popleft()
