"""Seller governance over the windows (pure): each seller's rates per market and category
over the last 90 days, its peers' rates in the same market and category, and its standing
per market the day it is judged (seller_standing.next_standing, with its hysteresis).

Rates per seller, market and category (`seller_segment` windows):

- `defect_rate`: fault claims the inspection confirmed, per return;
- `not_as_described_rate`: returns for NOT_AS_DESCRIBED, per return;
- `fault_claim_rate`: returns blaming the seller or the goods, per return;

and, per seller (the orders carry no category), `return_rate`: returns per order.

A seller is judged once per day per market: the worst standing any of its categories in the
market reaches (a step down needs every category calm). Its record says why, with the rates
that put it there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from services.decisions.risk.rolling_counts import RollingCounts, day_of
from services.decisions.risk.seller_standing import (
    ORDER,
    GovernanceTerms,
    PeerRates,
    SellerRates,
    Standing,
    next_standing,
)

WINDOW_DAYS = 90
SEGMENT_PREFIX = "seller_segment:"
SELLER_PREFIX = "seller:"


@dataclass(frozen=True)
class Segment:
    seller_id: str
    market: str
    category: str
    rates: SellerRates


def segments(windows: Mapping[str, RollingCounts], as_of_ms: int) -> list[Segment]:
    """Every seller segment with returns in the window, with its rates."""
    found = []
    for key, window in windows.items():
        if not key.startswith(SEGMENT_PREFIX):
            continue
        seller_id, market, category = key.removeprefix(SEGMENT_PREFIX).split("|", 2)
        returns = window.total("returns", as_of_ms, WINDOW_DAYS)
        if not returns:
            continue
        seller = windows.get(SELLER_PREFIX + seller_id)
        orders = seller.total("orders", as_of_ms, WINDOW_DAYS) if seller else 0
        seller_returns = seller.total("returns", as_of_ms, WINDOW_DAYS) if seller else 0
        rates = {
            "defect_rate": window.total("defects_found", as_of_ms, WINDOW_DAYS) / returns,
            "not_as_described_rate": window.total("reason_not_as_described", as_of_ms, WINDOW_DAYS)
            / returns,
            "fault_claim_rate": window.total("fault_claims", as_of_ms, WINDOW_DAYS) / returns,
        }
        if orders:
            rates["return_rate"] = min(1.0, seller_returns / orders)
        found.append(Segment(seller_id, market, category, SellerRates(rates, returns)))
    return found


def peers_of(
    found: list[Segment], terms: GovernanceTerms
) -> dict[tuple[str, str], dict[str, PeerRates]]:
    """Per market and category, the rates of the sellers with enough returns to count."""
    peers: dict[tuple[str, str], dict[str, PeerRates]] = {}
    for segment in found:
        if segment.rates.returns < terms.min_returns:
            continue
        by_rate = peers.setdefault((segment.market, segment.category), {})
        for name, rate in segment.rates.rates.items():
            by_rate.setdefault(name, PeerRates()).add(rate)
    return peers


def judged(
    seller_id: str,
    market: str,
    own: list[Segment],
    peers: Mapping[tuple[str, str], Mapping[str, PeerRates]],
    previous: Mapping[str, Any] | None,
    today_ms: int,
    terms: GovernanceTerms,
) -> dict[str, Any] | None:
    """The seller's standing in the market today (None: judged today already, or nothing
    changed: same standing, same calm count).

    Each category with enough returns is judged against its peers: the worst standing any
    reaches (at or above the current one) stands, and the calm count starts again. When
    every category is below the current standing, the seller is calm that day if every one
    is (a category with too few returns to judge is calm), and steps down once calm for
    `terms.calm_days` days in a row."""
    today = day_of(today_ms)
    if previous and previous["day"] >= today:
        return None
    current = Standing(previous["standing"]) if previous else Standing.GOOD
    calm = int(previous["calm_days"]) if previous else 0
    skipped = today - previous["day"] - 1 if previous else 0  # days not judged: calm ones
    decisions = [
        (
            segment,
            next_standing(
                current,
                calm + skipped,
                segment.rates,
                peers.get((market, segment.category), {}),
                terms,
            ),
        )
        for segment in sorted(own, key=lambda s: s.category)
        if segment.rates.returns >= terms.min_returns
    ]
    reached = [d for _, d in decisions if ORDER.index(d.standing) >= ORDER.index(current)]
    reasons = [f"{segment.category}: {reason}" for segment, d in decisions for reason in d.reasons]
    if reached and any(d.calm_days == 0 for d in reached):
        standing = max((d.standing for d in reached), key=ORDER.index)
        calm_days = 0
    else:
        calm_days = calm + skipped + 1
        standing = current
        if current is not Standing.GOOD and calm_days >= terms.calm_days:
            standing, calm_days = ORDER[ORDER.index(current) - 1], 0
            reasons = ["rates recovered"]
    if current is Standing.GOOD and standing is Standing.GOOD:
        calm_days = 0  # nothing to recover from
    if previous and (previous["standing"], previous["calm_days"]) == (standing.value, calm_days):
        return None
    if not previous and standing is Standing.GOOD:
        return None  # a seller never flagged needs no record
    return {
        "seller_id": seller_id,
        "market": market,
        "standing": standing.value,
        "previous": current.value,
        "calm_days": calm_days,
        "day": today,
        "reasons": reasons[:20],
        "rates": {
            segment.category: {n: round(r, 4) for n, r in segment.rates.rates.items()}
            for segment in own
        },
        "judged_at": today_ms,
    }


def standings_due(
    windows: Mapping[str, RollingCounts],
    previous: Mapping[str, Mapping[str, Any]],
    today_ms: int,
    terms: GovernanceTerms,
    owns: Callable[[str, str], bool] | None = None,
) -> list[dict[str, Any]]:
    """Every seller-and-market standing that changed today (`previous`: the latest record per
    `seller_id|market`; `owns(seller_id, market)`: whether this instance judges it)."""
    found = segments(windows, today_ms)
    peers = peers_of(found, terms)
    by_seller: dict[tuple[str, str], list[Segment]] = {}
    for segment in found:
        by_seller.setdefault((segment.seller_id, segment.market), []).append(segment)
    for record in previous.values():  # flagged sellers with no returns left are judged too
        if record["standing"] != Standing.GOOD.value:
            by_seller.setdefault((record["seller_id"], record["market"]), [])
    due = []
    for (seller_id, market), own in sorted(by_seller.items()):
        if owns is not None and not owns(seller_id, market):
            continue
        before = previous.get(f"{seller_id}|{market}")
        record = judged(seller_id, market, own, peers, before, today_ms, terms)
        if record is not None:
            due.append(record)
    return due
