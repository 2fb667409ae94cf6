"""Seller governance (pure): a seller's rates per category against its peers in the same
category and market, and the standing that follows — `good`, `watch` or `probation` —
with hysteresis, so a seller hovering at a threshold is not flagged and lifted every day.

Peers are kept as a histogram of their rates (percent buckets 0–100): bounded however many
sellers a category has, and enough for a percentile. A seller moves up when a rate is both
high among peers (percentile) and high against the peers' median (ratio); it moves down one
step only once every rate has been below the lift level (a share of the entry level) for
`calm_days` in a row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

BUCKETS = 101  # rate percent 0..100


class Standing(StrEnum):
    GOOD = "good"
    WATCH = "watch"  # looked at, stricter policy for its items
    PROBATION = "probation"  # the seller pays return shipping, buyers get a longer window


ORDER = (Standing.GOOD, Standing.WATCH, Standing.PROBATION)


@dataclass
class PeerRates:
    """The rates of one figure among the sellers of a category and market."""

    counts: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    def add(self, rate: float) -> None:
        self.counts[_bucket(rate)] += 1

    def remove(self, rate: float) -> None:
        bucket = _bucket(rate)
        self.counts[bucket] = max(0, self.counts[bucket] - 1)

    @property
    def sellers(self) -> int:
        return sum(self.counts)

    def percentile(self, rate: float) -> float:
        """The share of peers (0–100) with a rate below this one (half of those equal)."""
        total = self.sellers
        if not total:
            return 0.0
        bucket = _bucket(rate)
        below = sum(self.counts[:bucket])
        return round(100 * (below + self.counts[bucket] / 2) / total, 2)

    def median(self) -> float:
        total, seen = self.sellers, 0
        for bucket, count in enumerate(self.counts):
            seen += count
            if total and seen * 2 >= total:
                return bucket / 100
        return 0.0


def _bucket(rate: float) -> int:
    return min(BUCKETS - 1, max(0, round(rate * 100)))


@dataclass(frozen=True)
class Level:
    """Where a standing starts: a percentile among peers and a multiple of their median."""

    percentile: float
    times_median: float


@dataclass(frozen=True)
class GovernanceTerms:
    watch: Level = Level(90.0, 1.5)
    probation: Level = Level(97.0, 2.0)
    lift_share: float = 0.8  # below this share of the entry level counts as recovered
    calm_days: int = 14  # days in a row recovered before a step down
    min_returns: int = 20  # rates of fewer returns than this flag nobody
    min_peers: int = 5  # a category with fewer sellers has no peers to compare with


@dataclass(frozen=True)
class SellerRates:
    """A seller's figures in one category: rate name → rate, over how many returns."""

    rates: Mapping[str, float]
    returns: int


@dataclass(frozen=True)
class StandingDecision:
    standing: Standing
    reasons: tuple[str, ...]  # which rates put it there, with percentile and ratio
    calm_days: int  # days in a row every rate was below the lift level


def next_standing(
    current: Standing,
    calm_days: int,
    seller: SellerRates,
    peers: Mapping[str, PeerRates],
    terms: GovernanceTerms,
) -> StandingDecision:
    """The seller's standing after one more day of figures."""
    if seller.returns < terms.min_returns:
        return StandingDecision(current, ("too few returns to judge",), calm_days)
    reached = Standing.GOOD
    reasons: list[str] = []
    recovered = True
    for name, rate in sorted(seller.rates.items()):
        peer = peers.get(name)
        if peer is None or peer.sellers < terms.min_peers:
            continue
        percentile, median = peer.percentile(rate), peer.median()
        ratio = rate / median if median else float("inf") if rate else 0.0
        for standing, level in (
            (Standing.WATCH, terms.watch),
            (Standing.PROBATION, terms.probation),
        ):
            if percentile >= level.percentile and ratio >= level.times_median:
                if ORDER.index(standing) > ORDER.index(reached):
                    reached = standing
                reasons.append(
                    f"{name} {rate:.1%}: percentile {percentile:g} among {peer.sellers} peers, "
                    f"{ratio:.2f}× their median {median:.1%}"
                )
        lift = terms.watch
        if (
            percentile >= lift.percentile * terms.lift_share
            and ratio >= lift.times_median * terms.lift_share
        ):
            recovered = False
    if ORDER.index(reached) >= ORDER.index(current):
        return StandingDecision(reached, tuple(dict.fromkeys(reasons)), 0)
    calm = calm_days + 1 if recovered else 0
    if calm >= terms.calm_days:  # one step down, the calm count starts again
        return StandingDecision(ORDER[ORDER.index(current) - 1], ("rates recovered",), 0)
    return StandingDecision(current, tuple(dict.fromkeys(reasons)) or ("recovering",), calm)
