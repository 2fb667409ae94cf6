"""The inventory ledger entry of one sku at one location (pure).

A movement is applied at most once: its movement_id is stored with the balance it changed,
for as long as the movement can be delivered again. Movements come from the stock-movements
topic, which keeps records 30 days; an id is remembered for DEDUPE_WINDOW_MS after the
movement it belongs to (a margin over that retention), so the entry stays bounded.
"""

from __future__ import annotations

from typing import Any

DAY_MS = 24 * 3600 * 1000
DEDUPE_WINDOW_MS = 35 * DAY_MS  # stock-movements retention (30 days) and a margin


def empty_entry(sku: str, location: str) -> dict[str, Any]:
    return {
        "sku": sku,
        "location": location,
        "on_hand": 0,
        "movement_ids": [],
        "applied_at": [],  # when each remembered movement happened (same order as the ids)
        "duplicates_ignored": 0,
    }


def apply(
    entry: dict[str, Any] | None,
    movement: dict[str, Any],
    at_ms: int = 0,
    window_ms: int = DEDUPE_WINDOW_MS,
) -> tuple[dict[str, Any], bool]:
    """(new entry, whether stock moved); `at_ms` is when the movement happened. Ids older
    than `window_ms` before the newest one are forgotten."""
    entry = entry or empty_entry(movement["sku"], movement["location"])
    ids = entry["movement_ids"]
    # an entry written before the window was kept: its ids count as applied now
    times = entry.get("applied_at") or [at_ms] * len(ids)
    if movement["movement_id"] in ids:
        return {**entry, "duplicates_ignored": entry["duplicates_ignored"] + 1}, False
    ids, times = [*ids, movement["movement_id"]], [*times, at_ms]
    newest = max(times)
    kept = next((i for i, t in enumerate(times) if t >= newest - window_ms), len(times))
    return {
        **entry,
        "on_hand": entry["on_hand"] + movement["quantity"],
        "movement_ids": ids[kept:],
        "applied_at": times[kept:],
    }, True


def movements_of(name: str, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The movements a stock-movements record carries: all of one intake
    (StockMovementsRecorded), or one (StockMovementRecorded, written before)."""
    if name == "StockMovementsRecorded":
        return list(record["movements"])
    return [record["movement"]]


def ledger_key(sku: str, location: str) -> str:
    return f"{sku}@{location}"
