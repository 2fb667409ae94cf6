"""Whether the front door takes a new return now (pure): admission control.

A return the loop cannot finish in time is refused at the door with 503 and `Retry-After`
instead of being accepted into a backlog that grows while the offered load stays above what
the machine finishes (the buyer's app retries later; nothing was recorded). Three limits:

- `max_pipeline_wait_s`: the wait a return taken now is expected to see in the queues of
  the services it passes (decisions/pipeline_wait.py: each group's queued records over the
  rate it handles them, times how often a return visits it). Past `early_share` of the
  limit a share of new returns is refused, growing linearly to all of them at the limit
  (random early refusal, as RED does for packets): the door lets in about what the
  machine finishes instead of swinging between taking everything and nothing, each swing
  letting in a second or two of the full offer before the measure sees it;
- `max_wait_s`: how long the oldest `returns.events` record the coordinator has not handled
  has waited (a stalled coordinator, or no measure of the queues);
- `max_in_flight`: requests this front door is answering at once.

Between the early point and the limit the door also keeps a pace (`Pace`): new returns are
let in no faster than the part of the pipeline a return would wait longest in handles
them (this instance's share of it), slowing to PACE_AT_LIMIT of that at the limit so the
queues drain, and for PACE_HOLD_MS after the wait was last past the early point. The
random share alone depends on how well the wait is estimated: at 4× the offer the
estimate read 2–5 s while returns waited ~25 s, and the door took half again what the
pipeline finished (`make bench`, stop 35). The pace depends only on a measured rate.

Idempotent replays and the steps of returns already accepted are never refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_RETRY_AFTER_S = 60
PACE_AT_LIMIT = 0.5  # the share of the bottleneck's pace let in at the limit
PACE_HOLD_MS = 10_000  # the pace is kept this long after the wait was past the early point
PACE_BURST_S = 1.0  # a second's worth of the pace may come at once


@dataclass(frozen=True)
class AdmissionLimits:
    max_pipeline_wait_s: float = 5.0
    early_share: float = 0.5
    max_wait_s: float = 10.0
    max_in_flight: int = 256


@dataclass(frozen=True)
class Backlog:
    """What the front door measured last (None: not known, the broker could not be asked)."""

    waiting_s: float | None = None  # the oldest returns.events record not handled
    pipeline_wait_s: float | None = None  # decisions/pipeline_wait.py
    # returns per second the part a return would wait longest in handles (None: no queue)
    bottleneck_per_s: float | None = None


@dataclass(frozen=True)
class Refusal:
    reason: str
    retry_after_s: int  # whole seconds, 1 to MAX_RETRY_AFTER_S


def admission(
    backlog: Backlog, in_flight: int, limits: AdmissionLimits, draw: float = 1.0
) -> Refusal | None:
    """None to take the return; a Refusal when a limit is passed. `draw`, uniform in
    [0, 1), decides an early refusal: refused when below the share refused at this wait
    (1.0, the default, refuses only at the limit). A measure that is not known takes the
    return (refusing because the broker could not be asked would make it an outage here)."""
    if in_flight > limits.max_in_flight:
        return Refusal(f"{in_flight} requests in progress here (limit {limits.max_in_flight})", 1)
    waiting_s = backlog.waiting_s
    if waiting_s is not None and waiting_s > limits.max_wait_s:
        return Refusal(
            f"accepted returns wait {waiting_s:.0f} s for the coordinator "
            f"(limit {limits.max_wait_s:g} s)",
            _retry_after(waiting_s - limits.max_wait_s),
        )
    expected_s = backlog.pipeline_wait_s
    share = 0.0 if expected_s is None else refused_share(expected_s, limits)
    if expected_s is not None and (share >= 1.0 or draw < share):
        start = limits.max_pipeline_wait_s * limits.early_share
        return Refusal(
            f"a return taken now would wait {expected_s:.1f} s in the services' queues "
            f"(limit {limits.max_pipeline_wait_s:g} s, some refused from {start:g} s)",
            _retry_after(expected_s - start),
        )
    return None


def refused_share(expected_s: float, limits: AdmissionLimits) -> float:
    """The share of new returns refused at this expected wait: 0 up to early_share of the
    limit, then growing linearly to 1 at the limit."""
    start = limits.max_pipeline_wait_s * limits.early_share
    if expected_s >= limits.max_pipeline_wait_s:
        return 1.0
    if expected_s <= start:
        return 0.0
    return (expected_s - start) / (limits.max_pipeline_wait_s - start)


def _retry_after(over_s: float) -> int:
    return min(MAX_RETRY_AFTER_S, max(1, math.ceil(over_s)))


class Pace:
    """New returns let in at the pace the pipeline's bottleneck handles them while the
    queues are past the early point (pure: the caller gives the time; one per front-door
    instance, `share` its part of the door's requests). A token bucket: tokens accrue at
    the pace, at most PACE_BURST_S of them."""

    def __init__(self) -> None:
        self.tokens = 0.0
        self.at_ms: int | None = None
        self.busy_until_ms = -1  # the pace applies until then

    def admits(
        self, now_ms: int, backlog: Backlog, limits: AdmissionLimits, share: float = 1.0
    ) -> Refusal | None:
        """None to take the return (and spend a token); a Refusal when it comes too soon."""
        start = limits.max_pipeline_wait_s * limits.early_share
        wait = backlog.pipeline_wait_s
        if wait is not None and wait > start:
            self.busy_until_ms = now_ms + PACE_HOLD_MS
        per_s = backlog.bottleneck_per_s
        if now_ms > self.busy_until_ms or per_s is None:
            self.at_ms = None  # idle: the next busy spell starts with a full bucket
            return None
        over = (
            0.0
            if wait is None
            else min(1.0, max(0.0, wait - start) / (limits.max_pipeline_wait_s - start))
        )
        pace = max(0.0, per_s * share * (1.0 - (1.0 - PACE_AT_LIMIT) * over))
        burst = max(1.0, pace * PACE_BURST_S)
        if self.at_ms is None:
            self.tokens = burst
        else:
            self.tokens = min(burst, self.tokens + pace * max(0, now_ms - self.at_ms) / 1000)
        self.at_ms = now_ms
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return Refusal(
            f"new returns are let in at {pace:.0f}/s here, the pace the pipeline's busiest "
            f"part handles them ({per_s:.0f}/s in all)",
            1,
        )
