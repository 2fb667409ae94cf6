"""The inventory ledger entry: a movement moves stock at most once (idempotent by movement_id)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.decisions.stock.disposition import movements_for
from services.decisions.stock.inventory_ledger import (
    DEDUPE_WINDOW_MS,
    apply,
    empty_entry,
    ledger_key,
)


def movement(movement_id: str = "RMA-1-intake-1-S", quantity: int = 1) -> dict[str, Any]:
    return {
        "movement_id": movement_id,
        "sku": "S",
        "location": "WH-1/RESTOCK_SELLABLE",
        "disposition": "RESTOCK_SELLABLE",
        "quantity": quantity,
    }


def test_empty_entry_has_nothing_on_hand() -> None:
    assert empty_entry("S", "WH-1/REFURBISH") == {
        "sku": "S",
        "location": "WH-1/REFURBISH",
        "on_hand": 0,
        "movement_ids": [],
        "applied_at": [],
        "duplicates_ignored": 0,
    }


def test_first_movement_on_no_entry_creates_it_for_the_movements_sku_and_location() -> None:
    entry, moved = apply(None, movement(quantity=3))
    assert moved is True
    assert entry["sku"] == "S"
    assert entry["location"] == "WH-1/RESTOCK_SELLABLE"
    assert entry["on_hand"] == 3
    assert entry["movement_ids"] == ["RMA-1-intake-1-S"]
    assert entry["duplicates_ignored"] == 0


def test_applying_a_movement_once_moves_stock() -> None:
    entry, moved = apply(empty_entry("S", "WH-1/RESTOCK_SELLABLE"), movement())
    assert moved is True
    assert entry["on_hand"] == 1


def test_applying_the_same_movement_id_again_does_not_move_stock() -> None:
    once, _ = apply(None, movement())
    twice, moved = apply(once, movement())
    assert moved is False
    assert twice["on_hand"] == 1
    assert twice["movement_ids"] == ["RMA-1-intake-1-S"]


def test_each_ignored_duplicate_is_counted() -> None:
    entry, _ = apply(None, movement())
    for _ in range(3):
        entry, _ = apply(entry, movement())
    assert entry["duplicates_ignored"] == 3
    assert entry["on_hand"] == 1


def test_a_duplicate_with_another_quantity_is_still_ignored() -> None:
    entry, _ = apply(None, movement(quantity=1))
    entry, moved = apply(entry, movement(quantity=50))
    assert moved is False
    assert entry["on_hand"] == 1


def test_distinct_movement_ids_each_move_stock() -> None:
    entry, _ = apply(None, movement("m-1"))
    entry, moved = apply(entry, movement("m-2"))
    assert moved is True
    assert entry["on_hand"] == 2
    assert entry["movement_ids"] == ["m-1", "m-2"]


def test_negative_movement_takes_stock_out() -> None:
    entry, _ = apply(None, movement("in", 2))
    entry, moved = apply(entry, movement("out", -1))
    assert moved is True
    assert entry["on_hand"] == 1


def test_apply_does_not_modify_the_entry_it_is_given() -> None:
    entry, _ = apply(None, movement("m-1"))
    snapshot = {**entry, "movement_ids": list(entry["movement_ids"])}
    snapshot["applied_at"] = list(entry["applied_at"])
    apply(entry, movement("m-2"))
    apply(entry, movement("m-1"))
    assert entry == snapshot


def test_ledger_key_joins_sku_and_location() -> None:
    assert ledger_key("TS-M", "WH-1/QUARANTINE") == "TS-M@WH-1/QUARANTINE"


def test_replaying_a_returns_intake_movements_does_not_move_stock_twice() -> None:
    items = [
        {"sku": "S", "grade": "A", "matches_order": True, "measured_weight_grams": 1}
        for _ in range(2)
    ]
    entry = None
    for _ in range(2):  # the intake command delivered twice
        for m in movements_for("RMA-1", "WH-1", items):
            entry, _ = apply(entry, m)
    assert entry is not None
    assert entry["on_hand"] == 2
    assert entry["duplicates_ignored"] == 2


# A movement is identified by its id: the same id always carries the same quantity.
movement_pool = st.dictionaries(
    keys=st.text(min_size=1, max_size=8), values=st.integers(-5, 50), min_size=1, max_size=8
)


@given(data=st.data(), pool=movement_pool)
def test_applying_movements_with_repeats_equals_applying_the_distinct_ones_once(
    data: st.DataObject, pool: dict[str, int]
) -> None:
    ids = data.draw(st.lists(st.sampled_from(sorted(pool)), max_size=40))
    entry = None
    moves = []
    for movement_id in ids:
        entry, moved = apply(entry, movement(movement_id, pool[movement_id]))
        moves.append(moved)

    distinct = list(dict.fromkeys(ids))
    if entry is None:
        assert ids == []
        return
    assert entry["on_hand"] == sum(pool[i] for i in distinct)
    assert entry["movement_ids"] == distinct
    assert entry["duplicates_ignored"] == len(ids) - len(distinct)
    assert sum(moves) == len(distinct)

    once = None
    for movement_id in distinct:
        once, _ = apply(once, movement(movement_id, pool[movement_id]))
    assert once is not None
    assert (once["on_hand"], once["movement_ids"]) == (entry["on_hand"], entry["movement_ids"])


@given(
    gaps=st.lists(st.integers(0, DEDUPE_WINDOW_MS // 3), min_size=1, max_size=60),
    replayed=st.integers(0, 59),
)
def test_ids_are_kept_for_the_dedupe_window_and_no_longer(gaps: list[int], replayed: int) -> None:
    """The entry stays bounded: an id is forgotten once a movement newer than it by more
    than the window is applied; inside the window a replay still moves nothing."""
    entry, at = None, 0
    for number, gap in enumerate(gaps):
        at += gap
        entry, _ = apply(entry, movement(f"m-{number}"), at)
    assert entry is not None
    assert entry["on_hand"] == len(gaps)
    assert all(at - t <= DEDUPE_WINDOW_MS for t in entry["applied_at"])
    assert len(entry["movement_ids"]) == len(entry["applied_at"])
    index = replayed % len(gaps)
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    if at - times[index] <= DEDUPE_WINDOW_MS:
        again, moved = apply(entry, movement(f"m-{index}"), at)
        assert moved is False and again["on_hand"] == entry["on_hand"]
    else:
        assert f"m-{index}" not in entry["movement_ids"]


def test_an_entry_stored_before_the_window_keeps_its_ids_for_a_whole_window() -> None:
    old = {"sku": "S", "location": "L", "on_hand": 2, "movement_ids": ["a", "b"]}
    old["duplicates_ignored"] = 0
    entry, _ = apply(old, movement("c"), 10 * DEDUPE_WINDOW_MS)
    assert entry["movement_ids"] == ["a", "b", "c"]
    assert apply(entry, movement("a"), 10 * DEDUPE_WINDOW_MS)[1] is False
