"""Whether the front door takes a new return now (pure): admission control.

A return the loop cannot start soon is refused at the door with 503 and `Retry-After`
instead of being accepted into a backlog that grows while the offered load stays above what
the machine finishes (the buyer's app retries later; nothing was recorded). Two limits:

- `max_wait_s`: how long accepted returns have waited for the coordinator (the oldest
  `returns.events` record it has not committed: committing waits for its saga's changelog
  write, so a healthy coordinator shows up to ~7 s);
- `max_in_flight`: requests this front door is answering at once.

Idempotent replays and the steps of returns already accepted are never refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_RETRY_AFTER_S = 60


@dataclass(frozen=True)
class AdmissionLimits:
    max_wait_s: float = 5.0
    max_in_flight: int = 256


@dataclass(frozen=True)
class Refusal:
    reason: str
    retry_after_s: int  # whole seconds, 1 to MAX_RETRY_AFTER_S


def admission(waiting_s: float | None, in_flight: int, limits: AdmissionLimits) -> Refusal | None:
    """None to take the return; a Refusal when a limit is passed. `waiting_s` None: not
    known (the broker could not be asked): the return is taken."""
    if in_flight > limits.max_in_flight:
        return Refusal(f"{in_flight} requests in progress here (limit {limits.max_in_flight})", 1)
    if waiting_s is not None and waiting_s > limits.max_wait_s:
        over = waiting_s - limits.max_wait_s
        retry_after = min(MAX_RETRY_AFTER_S, max(1, math.ceil(over)))
        return Refusal(
            f"accepted returns wait {waiting_s:.0f} s for the coordinator "
            f"(limit {limits.max_wait_s:g} s)",
            retry_after,
        )
    return None
