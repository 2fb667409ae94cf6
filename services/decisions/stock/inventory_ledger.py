"""The inventory ledger: one entry per sku at a warehouse, its units per location (pure).

One entry per sku and warehouse (not per location): the ledger table is written once a
minute per changed entry, so its changelog costs one record per sku a minute touched
instead of one per sku and disposition (docs/design.md, the record budget).

Entries written before were keyed sku@location, one location's `on_hand` each. They are
left as they are (read by `locations_of`, their units added to the sku's): a movement after
them is booked on the sku's entry, and one whose id such an entry remembers is a duplicate.
They are not folded into the new entry: that would write two keys for one movement (a
crash between the two changelog writes could count a location twice or lose it), and an
entry written before movements were keyed by warehouse may live on another partition.

A movement is applied at most once: its movement_id is stored with the balance it changed,
for as long as the movement can be delivered again. Movements come from the stock-movements
topic, which keeps records 30 days; an id is remembered for DEDUPE_WINDOW_MS after the
movement it belongs to (a margin over that retention; INVENTORY_DEDUPE_WINDOW_MS, which a
soak sets to minutes), and at most MAX_REMEMBERED ids per
entry (the newest), so an entry stays far below Kafka's 1 MB record limit however hot its
sku: 10,000 ids and their times are ~560 KB of JSON. Only a sku with more movements than
that at one warehouse within the window remembers fewer than 35 days; its entry counts the
ids it forgot early (`forgotten_early`), which a replay of older movements could book again.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

DAY_MS = 24 * 3600 * 1000
DEDUPE_WINDOW_MS = 35 * DAY_MS  # stock-movements retention (30 days) and a margin
MAX_REMEMBERED = 10_000  # ids per entry at most (the record stays < 1 MB)


def empty_entry(sku: str, warehouse: str) -> dict[str, Any]:
    return {
        "sku": sku,
        "warehouse": warehouse,
        "locations": {},  # location -> units on hand
        "movement_ids": [],
        "applied_at": [],  # when each remembered movement happened (same order as the ids)
        "duplicates_ignored": 0,
    }


def warehouse_of(location: str) -> str:
    """A location is "<warehouse_id>/<disposition>" (disposition.movements_for); one
    without a disposition belongs to no warehouse ("")."""
    return location.rpartition("/")[0]


def ledger_key(sku: str, warehouse: str) -> str:
    return f"{sku}@{warehouse}"


def earlier_key(sku: str, location: str) -> str:
    """The key of an entry written before entries were per warehouse."""
    return f"{sku}@{location}"


def locations_of(entry: dict[str, Any]) -> dict[str, int]:
    """Units on hand per location, of an entry of either form."""
    if "locations" in entry:
        return dict(entry["locations"])
    return {entry["location"]: entry["on_hand"]}


def apply(
    entry: dict[str, Any] | None,
    movement: dict[str, Any],
    at_ms: int = 0,
    window_ms: int = DEDUPE_WINDOW_MS,
    max_remembered: int = MAX_REMEMBERED,
) -> tuple[dict[str, Any], bool]:
    """(new entry, whether stock moved); `at_ms` is when the movement happened. Ids older
    than `window_ms` before the newest one are forgotten, and the oldest beyond
    `max_remembered` (counted in `forgotten_early`)."""
    location = movement["location"]
    entry = entry or empty_entry(movement["sku"], warehouse_of(location))
    ids = entry["movement_ids"]
    # an entry written before the window was kept: its ids count as applied now
    times = entry.get("applied_at") or [at_ms] * len(ids)
    if movement["movement_id"] in ids:
        return {**entry, "duplicates_ignored": entry["duplicates_ignored"] + 1}, False
    ids, times = [*ids, movement["movement_id"]], [*times, at_ms]
    newest = max(times)
    kept = next((i for i, t in enumerate(times) if t >= newest - window_ms), len(times))
    early = max(0, len(ids) - kept - max_remembered)
    kept += early
    locations = dict(entry["locations"])
    locations[location] = locations.get(location, 0) + movement["quantity"]
    changed = {
        **entry,
        "locations": locations,
        "movement_ids": ids[kept:],
        "applied_at": times[kept:],
    }
    if early:
        changed["forgotten_early"] = entry.get("forgotten_early", 0) + early
    return changed, True


def book(
    ledger: MutableMapping[str, Any],
    movement: dict[str, Any],
    at_ms: int = 0,
    window_ms: int = DEDUPE_WINDOW_MS,
) -> bool:
    """Apply one movement to the ledger's entry of its sku and warehouse (unless the
    earlier per-location entry it names remembers it); whether stock moved. `window_ms`:
    how long an id is remembered (policy: INVENTORY_DEDUPE_WINDOW_MS)."""
    sku, location = movement["sku"], movement["location"]
    warehouse = warehouse_of(location)
    key, before = ledger_key(sku, warehouse), earlier_key(sku, location)
    entry = ledger.get(key)
    earlier = ledger.get(before) if before != key else None
    if earlier is not None and movement["movement_id"] in earlier["movement_ids"]:
        entry = entry or empty_entry(sku, warehouse)
        ledger[key] = {**entry, "duplicates_ignored": entry["duplicates_ignored"] + 1}
        return False
    ledger[key], moved = apply(entry, movement, at_ms, window_ms)
    return moved


def movements_of(name: str, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The movements a stock-movements record carries: all of one intake
    (StockMovementsRecorded), or one (StockMovementRecorded, written before)."""
    if name == "StockMovementsRecorded":
        return list(record["movements"])
    return [record["movement"]]
