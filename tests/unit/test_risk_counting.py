"""Rolling counts from repartitioned increments: each counted once however it is delivered
again (re-delivered after a restart, or published twice), bounded stamps, the serial check
read from the order's window, and a decision that names what it read."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.decisions.risk.count_records import (
    RECENT_KEPT,
    Increment,
    add_increment,
    expired,
    order_increments,
    window_of,
)
from services.decisions.risk.risk_check import decide_check, windows_needed
from services.decisions.risk.rolling_counts import DAY_MS, RollingCounts
from services.decisions.risk.rule_sets import parse_rule_set
from tests.support.return_events import inspected_item

NOW = 1_790_000_000_000
SWAP_RULES = parse_rule_set(
    {
        "rule_set": "risk",
        "version": 1,
        "outcomes": {"review": 30, "hold": 60, "decline": 100},
        "rules": [
            {
                "id": "item-swap",
                "score": 70,
                "when": {"feature": "item.serial_shipped", "==": False},
            }
        ],
    }
)


def increment(n: int) -> Increment:
    return Increment("buyer", "B-1", NOW - n * 3_600_000, {"returns": 1})


# each delivery: (increment number, source partition, offset, how it came)
DELIVERIES = st.lists(st.integers(0, 30), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(DELIVERIES, st.randoms(use_true_random=False))
def test_each_increment_counts_once_however_often_it_is_delivered(numbers, rng):
    """Published in order on one partition (offset = its number), then some re-delivered (a
    restart before the commit: the same offsets) and some published again right after (a
    producer retry: new offsets, the same id)."""
    unique = sorted(set(numbers))
    deliveries = [(n, n) for n in unique]
    for n in unique:
        if rng.random() < 0.3:
            deliveries.append((n, 1000 + n))  # a copy published again: a later offset
    deliveries.sort(key=lambda d: d[1])
    restart_at = rng.randrange(len(deliveries))
    deliveries = deliveries[: restart_at + 1] + deliveries[rng.randrange(restart_at + 1) :]
    entry = None
    for n, offset in deliveries:
        changed = add_increment(entry, increment(n), f"id-{n}", "risk.counts:0", offset, NOW)
        entry = changed or entry
    window = window_of(entry, NOW)
    assert window.total("returns", NOW, 30) == len(unique)
    assert len(entry["recent"]) <= RECENT_KEPT
    assert set(entry["applied"]) == {"risk.counts:0"}


def test_an_entry_past_the_longest_window_holds_no_day_and_can_be_forgotten():
    entry = add_increment(None, increment(0), "id-0", "s:0", 0, NOW)
    assert not expired(entry, NOW)
    assert expired(entry, NOW + 366 * DAY_MS)


def order(serials: list[str]) -> dict:
    return {
        "order_ref": "ORD-1",
        "buyer_id": "B-1",
        "seller_id": "S-1",
        "pickup_address": "Musterstrasse 1, Berlin",
        "placed_at": NOW - 20 * DAY_MS,
        "lines": [{"sku": "SKU-1", "quantity": len(serials), "serials": serials}],
    }


def check(serials: list[str | None]) -> dict:
    return {
        "envelope": {"return_id": "RMA-1"},
        "decision_id": "RMA-1-risk",
        "order_ref": "ORD-1",
        "buyer_id": "B-1",
        "seller_id": "S-1",
        "category": "electronics",
        "market": "DE",
        "reason_code": "CHANGED_MIND",
        "pickup_address": "MUSTERSTRASSE 1 berlin",
        "delivered_at": NOW - 10 * DAY_MS,
        "items": [inspected_item(sku="SKU-1", serial=serial) for serial in serials],
        "inspected_at": NOW,
    }


def windows_after(orders: list[dict]) -> dict:
    entries: dict[str, dict] = {}
    for number, placed in enumerate(orders):
        for inc in order_increments(placed):
            entries[inc.table_key] = add_increment(
                entries.get(inc.table_key), inc, f"o-{number}", "orders:0", number, NOW
            )
    return entries


def decided(serials: list[str | None], orders: list[dict]):
    entries = windows_after(orders)
    windows = {}
    for pair, key in windows_needed(check(serials)).items():
        if (window := window_of(entries.get(key), NOW)) is not None:
            windows[pair] = window
    return decide_check(check(serials), windows, SWAP_RULES, None, 48)


def test_a_serial_the_order_never_shipped_is_held_and_says_so():
    result = decided(["SN-1", "SN-X"], [order(["SN-1", "SN-2"])])
    assert result.decision.outcome.value == "hold"
    assert [(f.rule_id, f.inputs) for f in result.decision.fired] == [
        ("item-swap", {"item.serial_shipped": False})
    ]
    assert result.case is not None and result.case.held
    assert result.features["buyer.orders_365d"] == 1  # the address typed otherwise, one buyer
    assert result.features["address.buyers_90d"] == 1


def test_shipped_serials_an_unknown_order_or_no_serial_never_fire():
    assert decided(["SN-2", "SN-1"], [order(["SN-1", "SN-2"])]).decision.outcome.value == "approve"
    assert decided(["SN-1"], []).decision.outcome.value == "approve"  # order not known
    unknown = decided(["SN-1"], [])
    assert "item.serial_shipped" in unknown.decision.missing
    assert decided([None], [order(["SN-1"])]).decision.outcome.value == "approve"


def test_an_order_of_more_serials_than_a_day_keeps_is_not_judged_on_serials():
    many = [f"SN-{n}" for n in range(70)]
    result = decided(["SN-X"], [order(many)])
    assert result.decision.outcome.value == "approve"
    assert "item.serial_shipped" in result.decision.missing


def test_rolling_counts_members_are_the_distinct_ones_of_the_window():
    window = RollingCounts(365)
    window.add(NOW - 100 * DAY_MS, None, {"buyers": "B-1"})
    window.add(NOW, None, {"buyers": "B-2"})
    assert window.members("buyers", NOW, 90) == ({"B-2"}, False)
    assert window.members("buyers", NOW, 365) == ({"B-1", "B-2"}, False)
