"""The inventory ledger entry of one sku at one location (pure).

A movement is applied at most once: its movement_id is stored with the balance it changed.
"""

from __future__ import annotations

from typing import Any


def empty_entry(sku: str, location: str) -> dict[str, Any]:
    return {
        "sku": sku,
        "location": location,
        "on_hand": 0,
        "movement_ids": [],
        "duplicates_ignored": 0,
    }


def apply(entry: dict[str, Any] | None, movement: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(new entry, whether stock moved)."""
    entry = entry or empty_entry(movement["sku"], movement["location"])
    if movement["movement_id"] in entry["movement_ids"]:
        return {**entry, "duplicates_ignored": entry["duplicates_ignored"] + 1}, False
    return {
        **entry,
        "on_hand": entry["on_hand"] + movement["quantity"],
        "movement_ids": [*entry["movement_ids"], movement["movement_id"]],
    }, True


def ledger_key(sku: str, location: str) -> str:
    return f"{sku}@{location}"
