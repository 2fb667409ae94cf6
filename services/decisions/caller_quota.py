"""How often one caller (a buyer, a support agent) may call the front door (pure): a token
bucket per caller, `burst` requests at once and `per_minute` after that.

Bounded: at most `callers_kept` buckets are kept, least recently used first out; a bucket
forgotten is a full one, so forgetting never refuses anybody. Per process: with N
instances of the front door a caller spread over all of them gets up to N× the quota
(requests for one return reach its owner, so one return's calls count in one place).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class QuotaTerms:
    per_minute: float = 60.0
    burst: float = 20.0
    callers_kept: int = 100_000

    def __post_init__(self) -> None:
        if self.per_minute <= 0 or self.burst < 1 or self.callers_kept < 1:
            raise ValueError("a quota needs per_minute > 0, burst >= 1 and callers_kept >= 1")


@dataclass(frozen=True)
class OverQuota:
    retry_after_s: int  # when the next request would be let in (whole seconds, at least 1)


class CallerQuotas:
    def __init__(self, terms: QuotaTerms = QuotaTerms()) -> None:
        self.terms = terms
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def take(self, caller: str, now_s: float) -> OverQuota | None:
        """Spend one request of `caller`'s quota; OverQuota when none is left."""
        rate = self.terms.per_minute / 60.0
        tokens, at = self._buckets.pop(caller, (self.terms.burst, now_s))
        tokens = min(self.terms.burst, tokens + max(0.0, now_s - at) * rate)
        if tokens < 1.0:
            self._buckets[caller] = (tokens, now_s)
            return OverQuota(max(1, math.ceil((1.0 - tokens) / rate)))
        self._buckets[caller] = (tokens - 1.0, now_s)
        while len(self._buckets) > self.terms.callers_kept:
            self._buckets.popitem(last=False)
        return None

    def __len__(self) -> int:
        return len(self._buckets)
