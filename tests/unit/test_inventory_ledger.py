"""The inventory ledger (pure): one entry per sku and warehouse, each movement once, and
entries of the earlier per-location form read beside it."""

from __future__ import annotations

from collections import Counter

import orjson
from hypothesis import given
from hypothesis import strategies as st

from services.decisions.stock import inventory_ledger as ledger_rules
from services.engine.stored_value import stored_value


def movement(movement_id: str, sku: str = "SKU-1", location: str = "WH-1/RESTOCK", n: int = 1):
    return {"movement_id": movement_id, "sku": sku, "location": location, "quantity": n}


def test_one_entry_per_sku_and_warehouse_with_its_units_per_location() -> None:
    ledger: dict = {}
    assert ledger_rules.book(ledger, movement("m1"))
    assert ledger_rules.book(ledger, movement("m2", location="WH-1/QUARANTINE"))
    assert ledger_rules.book(ledger, movement("m3", location="WH-2/RESTOCK"))
    assert not ledger_rules.book(ledger, movement("m1"))  # the same movement again
    assert sorted(ledger) == ["SKU-1@WH-1", "SKU-1@WH-2"]
    entry = ledger["SKU-1@WH-1"]
    assert ledger_rules.locations_of(entry) == {"WH-1/RESTOCK": 1, "WH-1/QUARANTINE": 1}
    assert entry["duplicates_ignored"] == 1


def test_an_entry_of_the_earlier_form_stays_and_still_recognises_its_movements() -> None:
    earlier = {
        "sku": "SKU-1",
        "location": "WH-1/RESTOCK",
        "on_hand": 3,
        "movement_ids": ["old-1", "old-2", "old-3"],
        "duplicates_ignored": 1,
    }
    ledger: dict = {"SKU-1@WH-1/RESTOCK": earlier}
    assert not ledger_rules.book(ledger, movement("old-2"), at_ms=5)  # remembered before
    assert ledger_rules.book(ledger, movement("new-1"), at_ms=6)
    assert not ledger_rules.book(ledger, movement("new-1"), at_ms=7)
    assert ledger["SKU-1@WH-1/RESTOCK"] == earlier  # never written again: one key per move
    entry = ledger["SKU-1@WH-1"]
    assert ledger_rules.locations_of(entry) == {"WH-1/RESTOCK": 1}
    assert entry["duplicates_ignored"] == 2
    assert ledger_rules.locations_of(earlier) == {"WH-1/RESTOCK": 3}


def test_a_location_without_a_warehouse_never_takes_the_key_of_an_earlier_entry() -> None:
    ledger: dict = {}
    assert ledger_rules.book(ledger, movement("m1", location="LOOSE"))
    assert ledger_rules.book(ledger, movement("m2", location="LOOSE"))
    assert ledger_rules.locations_of(ledger["SKU-1@"]) == {"LOOSE": 2}


movements = st.lists(
    st.tuples(
        st.integers(0, 12),  # movement number (repeats are redeliveries)
        st.sampled_from(["SKU-1", "SKU-2"]),
        st.sampled_from(["WH-1/RESTOCK", "WH-1/QUARANTINE", "WH-2/RESTOCK"]),
    ),
    max_size=40,
)


@given(movements, st.integers(0, 40))
def test_units_per_location_are_those_of_each_distinct_movement_once(drawn, upgrade_at) -> None:
    """Booked with the earlier per-location form up to `upgrade_at`, then this one
    (redeliveries of earlier movements included): each sku's units per location count
    every distinct movement once, summed over both forms."""
    ledger: dict = {}
    first_of: dict[int, tuple[str, str]] = {}
    for index, (number, sku, location) in enumerate(drawn):
        sku, location = first_of.setdefault(number, (sku, location))  # an id names one move
        booked = movement(f"m{number}", sku, location)
        if index < upgrade_at:  # as the service booked before this change
            key = ledger_rules.earlier_key(sku, location)
            entry = ledger.get(key) or {
                "sku": sku,
                "location": location,
                "on_hand": 0,
                "movement_ids": [],
                "duplicates_ignored": 0,
            }
            if booked["movement_id"] not in entry["movement_ids"]:
                entry = {
                    **entry,
                    "on_hand": entry["on_hand"] + 1,
                    "movement_ids": [*entry["movement_ids"], booked["movement_id"]],
                }
            ledger[key] = entry
        else:
            ledger_rules.book(ledger, booked, at_ms=index)
    expected = Counter(first_of.values())
    found: Counter = Counter()
    for entry in ledger.values():
        for location, units in ledger_rules.locations_of(entry).items():
            found[(entry["sku"], location)] += units
    assert +found == expected


def test_an_entry_remembers_at_most_its_newest_ids_and_counts_the_ones_forgotten() -> None:
    entry = None
    for number in range(250):
        moving = movement(f"M-{number:04d}", sku="SKU-HOT")
        entry, moved = ledger_rules.apply(entry, moving, at_ms=number, max_remembered=100)
        assert moved
    assert entry is not None
    assert entry["movement_ids"] == [f"M-{n:04d}" for n in range(150, 250)]
    assert entry["forgotten_early"] == 150
    assert entry["locations"] == {"WH-1/RESTOCK": 250}
    duplicate = movement("M-0249", sku="SKU-HOT")
    assert ledger_rules.apply(entry, duplicate, at_ms=250, max_remembered=100)[1] is False


def test_booking_remembers_ids_for_the_window_it_is_given_and_no_longer() -> None:
    ledger: dict = {}
    minute = 60_000
    for number in range(10):
        assert ledger_rules.book(ledger, movement(f"M-{number}"), number * minute, 3 * minute)
    (entry,) = ledger.values()
    assert entry["movement_ids"] == ["M-6", "M-7", "M-8", "M-9"]  # within 3 min of the newest
    assert "forgotten_early" not in entry
    assert not ledger_rules.book(ledger, movement("M-7"), 10 * minute, 3 * minute)


def test_an_entry_of_a_hot_sku_stays_far_below_the_record_limit() -> None:
    # ~21k remembered ids once passed Kafka's 1 MB limit; the cap keeps MAX_REMEMBERED
    ids = [f"{n:08d}-0000-4000-8000-000000000000" for n in range(ledger_rules.MAX_REMEMBERED)]
    full = {
        **ledger_rules.empty_entry("SKU-HOT", "WH-1"),
        "locations": {"WH-1/RESTOCK": len(ids)},
        "movement_ids": ids,
        "applied_at": [1_790_000_000_000 + n for n in range(len(ids))],
    }
    moving = movement("99999999-0000-4000-8000-000000000000", sku="SKU-HOT")
    entry, moved = ledger_rules.apply(full, moving, at_ms=1_790_000_100_000)
    assert moved and len(entry["movement_ids"]) == ledger_rules.MAX_REMEMBERED
    assert len(orjson.dumps(entry)) < 1_000_000 * 0.6  # even before it is deflated
    assert len(stored_value(entry)) < 1_000_000 * 0.6  # the changelog record, as written
