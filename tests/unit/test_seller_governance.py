"""Seller governance over the windows: a seller whose defect rate stands out among its
category's peers is flagged in that market, honest ones are not, a flag is judged once a
day, and it is lifted one step after the rates stay calm long enough."""

from __future__ import annotations

from services.decisions.risk.count_records import add_increment, merged, window_of
from services.decisions.risk.return_features import counted_inspection, counted_return, item_facts
from services.decisions.risk.rolling_counts import DAY_MS
from services.decisions.risk.seller_governance import standings_due
from services.decisions.risk.seller_standing import GovernanceTerms
from tests.support.return_events import inspected_item

NOW = 1_790_000_000_000
TERMS = GovernanceTerms()


def request(seller: str, n: int, reason: str) -> dict:
    return {
        "order_ref": f"ORD-{seller}-{n}",
        "buyer_id": f"B-{seller}-{n}",
        "seller_id": seller,
        "category": "electronics",
        "market": "DE",
        "reason_code": reason,
        "pickup_address": f"Street {n}",
        "delivered_at": NOW - 40 * DAY_MS,
        "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": {"amount_minor": 1000}}],
    }


def windows_of(sellers: dict[str, int], at_ms: int = NOW - 10 * DAY_MS) -> dict:
    """30 returns per seller, the given number of them DEFECTIVE with a defect found."""
    entries: dict[str, dict] = {}
    offset = 0
    for seller, defective in sellers.items():
        for n in range(30):
            reason = "DEFECTIVE" if n < defective else "WRONG_SIZE"
            req = request(seller, n, reason)
            grade = "D" if n < defective else "A"
            facts = item_facts(req, [inspected_item(grade=grade)], None, at_ms)
            for inc in merged(counted_return(req, at_ms) + counted_inspection(req, facts, at_ms)):
                offset += 1
                entries[inc.table_key] = add_increment(
                    entries.get(inc.table_key), inc, f"id-{offset}", "s:0", offset, NOW
                )
    return {key: window_of(entry, NOW) for key, entry in entries.items()}


SELLERS = {"S-BAD": 18, **{f"S-OK-{n}": 2 + n % 3 for n in range(8)}}


def test_a_seller_whose_defect_rate_stands_out_is_flagged_and_honest_ones_are_not():
    due = standings_due(windows_of(SELLERS), {}, NOW, TERMS)
    assert [(r["seller_id"], r["market"], r["standing"]) for r in due] == [
        ("S-BAD", "DE", "watch")  # 94th percentile of 9 peers, 6× their median
    ]
    [flagged] = due
    assert any("defect_rate 60.0%" in reason for reason in flagged["reasons"])
    assert flagged["rates"]["electronics"]["defect_rate"] == 0.6


def test_a_seller_is_judged_once_a_day_and_lifted_one_step_after_calm_days():
    windows = windows_of(SELLERS)
    [flagged] = standings_due(windows, {}, NOW, TERMS)
    previous = {"S-BAD|DE": flagged}
    assert standings_due(windows, previous, NOW + 3_600_000, TERMS) == []  # the same day
    calm = windows_of({"S-BAD": 2, **{s: d for s, d in SELLERS.items() if s != "S-BAD"}})
    day, lifted = NOW, None
    for _ in range(TERMS.calm_days + 1):
        day += DAY_MS
        due = standings_due(calm, previous, day, TERMS)
        for record in due:
            previous[f"{record['seller_id']}|{record['market']}"] = record
            if record["standing"] != flagged["standing"]:
                lifted = lifted or record
    assert lifted is not None and lifted["standing"] == "good"
    assert lifted["day"] - flagged["day"] == TERMS.calm_days


def test_too_few_peers_or_returns_flag_nobody():
    assert standings_due(windows_of({"S-BAD": 18, "S-OK-1": 2}), {}, NOW, TERMS) == []


def test_only_the_instance_judging_a_seller_and_market_publishes_it():
    windows = windows_of(SELLERS)
    assert standings_due(windows, {}, NOW, TERMS, lambda seller, market: False) == []
    judged = standings_due(windows, {}, NOW, TERMS, lambda seller, market: market == "DE")
    assert [r["seller_id"] for r in judged] == ["S-BAD"]
