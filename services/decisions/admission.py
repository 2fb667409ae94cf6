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

Idempotent replays and the steps of returns already accepted are never refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_RETRY_AFTER_S = 60


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
