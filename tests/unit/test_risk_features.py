"""A return's risk features from its history (pure), and the live rule set's decision on
each kind of abuse the issue names, next to an honest buyer's."""

from __future__ import annotations

from pathlib import Path

import yaml

from services.decisions.risk.return_features import (
    apply,
    counted_inspection,
    counted_order,
    counted_return,
    item_facts,
    return_features,
)
from services.decisions.risk.rolling_counts import DAY_MS, RollingCounts
from services.decisions.risk.rule_sets import Outcome, parse_rule_set

LIVE = parse_rule_set(
    yaml.safe_load((Path(__file__).resolve().parents[2] / "deploy/risk/live.yaml").read_text())
)
T0 = 20_400 * DAY_MS


def order(n: int, buyer: str, address: str = "Musterstrasse 1, Berlin", at: int = T0) -> dict:
    return {
        "order_ref": f"O-{buyer}-{n}",
        "buyer_id": buyer,
        "seller_id": "S-1",
        "placed_at": at,
        "pickup_address": address,
        "lines": [{"sku": "SKU-1", "quantity": 1, "serials": [f"SN-{buyer}-{n}"]}],
    }


def request(
    n: int,
    buyer: str,
    reason: str = "CHANGED_MIND",
    category: str = "home",
    address: str = "Musterstrasse 1, Berlin",
) -> dict:
    return {
        "buyer_id": buyer,
        "seller_id": "S-1",
        "category": category,
        "reason_code": reason,
        "pickup_address": address,
        "delivered_at": T0,
        "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": {"amount_minor": 5_000}}],
    }


def scanned(
    grade: str = "A",
    weight: int = 1_000,
    serial: str | None = None,
    notes: str = "",
    matches: bool = True,
) -> dict:
    return {
        "grade": grade,
        "measured_weight_grams": weight,
        "expected_weight_grams": 1_000,
        "serial": serial,
        "notes": notes,
        "matches_order": matches,
    }


def history(
    buyer: str,
    orders: int,
    returns: int,
    reason: str = "CHANGED_MIND",
    items=None,
    address="Musterstrasse 1, Berlin",
):
    keys: dict = {}
    for n in range(orders):
        apply(keys, counted_order(order(n, buyer, address, T0 + n * DAY_MS)))
    for n in range(returns):
        req = request(n, buyer, reason, address=address)
        at = T0 + (n + 1) * DAY_MS * 2
        apply(keys, counted_return(req, at))
        facts = item_facts(
            req, [items or scanned(serial=f"SN-{buyer}-{n}")], [f"SN-{buyer}-{n}"], at
        )
        apply(keys, counted_inspection(req, facts, at))
    return keys


AS_OF = T0 + 60 * DAY_MS


def decide(
    keys: dict,
    buyer: str,
    items: list[dict],
    shipped: list[str],
    reason="CHANGED_MIND",
    category="home",
    address="Musterstrasse 1, Berlin",
    kept_days=20,
):
    req = request(99, buyer, reason, category, address)
    apply(keys, counted_return(req, AS_OF))
    facts = item_facts(req | {"delivered_at": AS_OF - kept_days * DAY_MS}, items, shipped, AS_OF)
    return LIVE.decide(return_features(req, facts, keys, AS_OF))


def test_an_honest_buyer_is_approved() -> None:
    keys = history("B-honest", orders=12, returns=1)
    decision = decide(keys, "B-honest", [scanned(serial="SN-x")], ["SN-x"])
    assert decision.outcome is Outcome.APPROVE and decision.fired == ()


def test_a_serial_returner_is_queued_for_review() -> None:
    keys = history("B-serial", orders=14, returns=12)
    decision = decide(keys, "B-serial", [scanned(serial="SN-y")], ["SN-y"])
    assert [f.rule_id for f in decision.fired] == ["serial-returner"]
    assert decision.fired[0].inputs == {"buyer.return_rate_365d": 0.9286, "buyer.returns_365d": 13}
    assert decision.outcome is Outcome.REVIEW


def test_an_empty_box_and_a_swapped_item_are_held() -> None:
    keys = history("B-box", orders=3, returns=0)
    empty = decide(keys, "B-box", [scanned(weight=80, serial="SN-z")], ["SN-z"])
    assert "empty-box" in [f.rule_id for f in empty.fired] and empty.outcome is Outcome.HOLD
    swap = decide(history("B-swap", 3, 0), "B-swap", [scanned(serial="SN-other")], ["SN-z"])
    assert [f.rule_id for f in swap.fired] == ["item-swap"] and swap.outcome is Outcome.HOLD


def test_wardrobing_and_claim_abuse() -> None:
    worn = scanned(grade="B", notes="worn once, tags removed", serial="SN-w")
    dress = decide(
        history("B-ward", 5, 0), "B-ward", [worn], ["SN-w"], category="apparel", kept_days=4
    )
    assert [f.rule_id for f in dress.fired] == ["wardrobing"]
    claims = history("B-claims", orders=6, returns=4, reason="DEFECTIVE")  # grade A every time
    claimed = decide(claims, "B-claims", [scanned(serial="SN-c")], ["SN-c"], reason="DEFECTIVE")
    assert "claim-abuse" in [f.rule_id for f in claimed.fired]
    # 4 earlier claims overturned of 5 (this one counted as a claim, not judged yet)
    assert claimed.fired[-1].inputs["buyer.overturned_share_365d"] == 0.8


def test_many_buyers_behind_one_address_however_it_is_typed() -> None:
    keys: dict = {}
    for n, typed in enumerate(
        ["Block 4, Salmiya", "block 4 salmiya", "BLOCK 4,  SALMIYA", "Block-4 Salmiya"]
    ):
        apply(keys, counted_order(order(0, f"B-ring-{n}", typed)))
    decision = decide(
        keys, "B-ring-0", [scanned(serial="SN-r")], ["SN-r"], address="Block 4 Salmiya"
    )
    assert [f.rule_id for f in decision.fired] == ["linked-accounts"]
    assert decision.fired[0].inputs == {"address.buyers_90d": 4}


def test_features_read_only_the_windows_and_unknown_checks_stay_missing() -> None:
    keys = history("B-old", orders=5, returns=5)
    far_later = AS_OF + 400 * DAY_MS
    req = request(1, "B-old")
    features = return_features(req, None, keys, far_later)
    assert features["buyer.returns_365d"] == 0 and features["buyer.return_rate_365d"] == 0.0
    facts = item_facts(req, [scanned(serial="SN-1") | {"expected_weight_grams": None}], None, T0)
    with_item = return_features(req, facts, {}, T0)
    assert "item.weight_ratio" not in with_item and "item.serial_shipped" not in with_item
    assert all(
        isinstance(window, RollingCounts) and len(window.days) <= 365 for window in keys.values()
    )
