"""Rolling counts kept per key from repartitioned increments (pure).

The risk service turns each order, accepted return and inspection into increments, one per
`subject:key` it touches (`increments`), publishes each keyed by that key (a repartition,
as Kafka Streams does: the key's owner folds it), and the owner adds it to the key's
window entry (`add_increment`).

Counted once, twice over:

- where it is made, each source event is counted once per return or order (the service
  notes what it counted beside the return or order, so a replayed or re-published event
  adds nothing);
- where it is added, an increment is stamped with the input record it came from
  (`topic:partition` and offset); the entry keeps the highest offset it took from each
  source partition, so an increment re-delivered after a restart counts nothing
  (increments of one source partition reach a key in the order they were published), and
  the ids of its last RECENT_KEPT increments, so a copy published again soon after is
  dropped too. Both are bounded: by the source partitions and by RECENT_KEPT.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.decisions.risk.return_features import (
    HORIZON_DAYS,
    Counted,
    address_key,
    counted_inspection,
    counted_order,
    counted_return,
    item_facts,
)
from services.decisions.risk.rolling_counts import RollingCounts

ORDER_SUBJECT = "order"  # an order's shipped serials, for the serial check of its returns
RECENT_KEPT = 64  # increment ids remembered per key


@dataclass(frozen=True)
class Increment:
    """What one input record adds to one key: counters and distinct members."""

    subject: str
    key: str
    at_ms: int
    counts: dict[str, int] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)

    @property
    def table_key(self) -> str:
        return table_key(self.subject, self.key)


def table_key(subject: str, key: str) -> str:
    return f"{subject}:{key}"


def merged(counted: Iterable[Counted]) -> list[Increment]:
    """One increment per key (an order with two lines of one SKU touches it once)."""
    by_key: dict[tuple[str, str], Increment] = {}
    for item in counted:
        increment = by_key.setdefault(
            (item.subject, item.key), Increment(item.subject, item.key, item.at_ms)
        )
        for name, amount in item.counts.items():
            increment.counts[name] = increment.counts.get(name, 0) + amount
        for name, member in item.members.items():
            seen = increment.members.setdefault(name, [])
            if member not in seen:
                seen.append(member)
    return list(by_key.values())


def order_increments(order: Mapping[str, Any]) -> list[Increment]:
    """An order placed: its buyer's, seller's, SKUs' and address's counts, and its shipped
    serials under `order:<ref>`."""
    counted = counted_order(order)
    at = int(order["placed_at"])
    serials = [s for line in order["lines"] for s in line.get("serials") or ()]
    counted += [Counted(ORDER_SUBJECT, order["order_ref"], at, {}, {"serials": s}) for s in serials]
    return merged(counted)


def return_increments(request: Mapping[str, Any], accepted_at_ms: int) -> list[Increment]:
    return merged(counted_return(request, accepted_at_ms))


def inspection_increments(
    request: Mapping[str, Any], items: list[Mapping[str, Any]], inspected_at_ms: int
) -> list[Increment]:
    """An inspection's counts (overturned claims, worn returns, confirmed fraud), made
    without the order's serials: counted when the saga rejects the return at inspection
    (no risk check follows) or after its risk decision (which read the serials)."""
    facts = item_facts(request, items, None, inspected_at_ms)
    return merged(counted_inspection(request, facts, inspected_at_ms))


def add_increment(
    entry: Mapping[str, Any] | None,
    increment: Increment,
    counted_id: str,
    source: str,
    source_offset: int,
    today_ms: int,
) -> dict[str, Any] | None:
    """The key's entry with the increment added; None when it was taken before (a
    duplicate). `today_ms` expires the days no window reaches any more."""
    applied = dict((entry or {}).get("applied", {}))
    recent = list((entry or {}).get("recent", []))
    if source_offset <= applied.get(source, -1) or counted_id in recent:
        return None
    if entry:
        window = RollingCounts.from_json(entry["window"], today_ms)
    else:
        window = RollingCounts(HORIZON_DAYS)
    window.add(increment.at_ms, increment.counts)
    for name, members in increment.members.items():
        for member in members:
            window.add(increment.at_ms, None, {name: member})
    applied[source] = source_offset
    return {
        "subject": increment.subject,
        "key": increment.key,
        "window": window.to_json(),
        "applied": applied,
        "recent": [*recent, counted_id][-RECENT_KEPT:],
    }


def window_of(entry: Mapping[str, Any] | None, today_ms: int) -> RollingCounts | None:
    """A key's rolling counts from its stored entry, expired as of today (None: no entry)."""
    if not entry:
        return None
    return RollingCounts.from_json(entry["window"], today_ms)


def expired(entry: Mapping[str, Any], today_ms: int) -> bool:
    """Every day of the entry is past the longest window: the key can be forgotten."""
    window = window_of(entry, today_ms)
    return window is None or not window.days


def keys_read(buyer_id: str, seller_id: str, pickup_address: str, order_ref: str) -> dict:
    """The table keys a return's features read, by (subject, key)."""
    keys = {
        ("buyer", buyer_id),
        ("seller", seller_id),
        ("address", address_key(pickup_address)),
        (ORDER_SUBJECT, order_ref),
    }
    return {pair: table_key(*pair) for pair in keys}
