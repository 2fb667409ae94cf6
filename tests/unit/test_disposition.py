"""Disposition of an inspected item: the docstring's table, row precedence, weight boundary,
and the stock movements derived from a scan."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from services.decisions.stock.disposition import Decision, decide, movements_for
from services.decisions.stock.disposition_rules import (
    DISPOSITIONS,
    DispositionRulesError,
    ItemFacts,
    item_facts_of,
    parse_disposition_rules,
)
from services.eventing.avro_codec import AvroCodec
from services.warehouse_intake.app import load_disposition_rules
from tests.support.return_events import envelope

ALLOWED_DISPOSITIONS = {
    "QUARANTINE",
    "RESTOCK_SELLABLE",
    "REFURBISH",
    "RETURN_TO_VENDOR",
    "DISPOSE",
}
GRADE_ROWS = {
    "A": "RESTOCK_SELLABLE",
    "B": "REFURBISH",
    "C": "RETURN_TO_VENDOR",
    "D": "DISPOSE",
}


def item(
    *,
    grade: Any = "A",
    matches_order: Any = True,
    measured: int = 400,
    expected: int | None = 410,
    sku: str = "SKU-1",
) -> dict[str, Any]:
    return {
        "sku": sku,
        "serial": None,
        "grade": grade,
        "matches_order": matches_order,
        "measured_weight_grams": measured,
        "expected_weight_grams": expected,
        "notes": "",
        "photo_refs": [],
    }


# ------------------------------------------------------------------ one test per table row


def test_item_not_matching_the_order_is_quarantined() -> None:
    assert decide(item(matches_order=False)) == Decision("QUARANTINE", "item-does-not-match-order")


def test_item_weighing_below_half_the_expected_weight_is_quarantined() -> None:
    assert decide(item(measured=100, expected=1000)) == Decision(
        "QUARANTINE", "weight-far-below-expected"
    )


def test_grade_a_is_restocked_sellable() -> None:
    assert decide(item(grade="A")) == Decision("RESTOCK_SELLABLE", "grade-A")


def test_grade_b_is_refurbished() -> None:
    assert decide(item(grade="B")) == Decision("REFURBISH", "grade-B")


def test_grade_c_is_returned_to_vendor() -> None:
    assert decide(item(grade="C")) == Decision("RETURN_TO_VENDOR", "grade-C")


def test_grade_d_is_disposed() -> None:
    assert decide(item(grade="D")) == Decision("DISPOSE", "grade-D")


@pytest.mark.parametrize("grade", ["UNKNOWN", "E", "", None, "a", "AB"])
def test_unknown_grade_is_quarantined(grade: Any) -> None:
    assert decide(item(grade=grade)) == Decision("QUARANTINE", "grade-unknown")


# ------------------------------------------------------------------ the whole grid


def _table(grade: str, matches: bool, weight: str) -> tuple[str, str]:
    """The docstring's table, read top to bottom; the first matching row wins."""
    if not matches:
        return "QUARANTINE", "item-does-not-match-order"
    if weight == "far-below":
        return "QUARANTINE", "weight-far-below-expected"
    if grade in GRADE_ROWS:
        return GRADE_ROWS[grade], f"grade-{grade}"
    return "QUARANTINE", "grade-unknown"


WEIGHTS = {  # name -> (measured, expected)
    "as-expected": (1000, 1000),
    "far-below": (100, 1000),
    "no-expected-weight": (1, None),
    "expected-weight-zero": (0, 0),
    "heavier-than-expected": (5000, 1000),
}
GRID = list(itertools.product(["A", "B", "C", "D", "UNKNOWN"], [True, False], WEIGHTS))


@pytest.mark.parametrize(("grade", "matches", "weight"), GRID)
def test_every_grade_match_and_weight_combination_follows_the_table(
    grade: str, matches: bool, weight: str
) -> None:
    measured, expected = WEIGHTS[weight]
    decision = decide(
        item(grade=grade, matches_order=matches, measured=measured, expected=expected)
    )
    assert (decision.disposition, decision.rule) == _table(grade, matches, weight)


# ------------------------------------------------------------------ precedence


def test_mismatch_beats_light_weight() -> None:
    decision = decide(item(matches_order=False, measured=1, expected=1000))
    assert decision.rule == "item-does-not-match-order"


def test_mismatch_beats_grade() -> None:
    assert decide(item(grade="A", matches_order=False)).rule == "item-does-not-match-order"


def test_mismatch_beats_unknown_grade() -> None:
    assert decide(item(grade="Z", matches_order=False)).rule == "item-does-not-match-order"


def test_light_weight_beats_grade_a() -> None:
    assert decide(item(grade="A", measured=1, expected=1000)).rule == "weight-far-below-expected"


def test_light_weight_beats_unknown_grade() -> None:
    assert decide(item(grade="Z", measured=1, expected=1000)).rule == "weight-far-below-expected"


# ------------------------------------------------------------------ weight boundary


def test_exactly_half_the_expected_weight_is_not_below_half() -> None:
    assert decide(item(grade="A", measured=500, expected=1000)).rule == "grade-A"


def test_one_gram_less_than_half_is_below_half() -> None:
    assert decide(item(grade="A", measured=499, expected=1000)).rule == (
        "weight-far-below-expected"
    )


def test_half_of_an_odd_expected_weight_is_not_rounded_down() -> None:
    # 500 g is below half of 1001 g (500.5 g); 501 g is not.
    assert decide(item(measured=500, expected=1001)).rule == "weight-far-below-expected"
    assert decide(item(measured=501, expected=1001)).rule == "grade-A"


def test_no_expected_weight_skips_the_weight_rule() -> None:
    assert decide(item(grade="B", measured=0, expected=None)).rule == "grade-B"


def test_missing_expected_weight_key_skips_the_weight_rule() -> None:
    raw = item(grade="B", measured=0)
    del raw["expected_weight_grams"]
    assert decide(raw).rule == "grade-B"


def test_expected_weight_zero_skips_the_weight_rule() -> None:
    assert decide(item(grade="C", measured=0, expected=0)).rule == "grade-C"


def test_zero_measured_weight_with_an_expected_weight_is_below_half() -> None:
    assert decide(item(measured=0, expected=2)).rule == "weight-far-below-expected"


@given(expected=st.integers(1, 10**7), measured=st.integers(0, 10**7))
def test_weight_rule_fires_exactly_when_measured_is_below_half_of_expected(
    expected: int, measured: int
) -> None:
    decision = decide(item(grade="A", measured=measured, expected=expected))
    below_half = measured * 2 < expected
    assert (decision.rule == "weight-far-below-expected") is below_half


# ------------------------------------------------------------------ movements_for


def test_one_movement_per_item_in_item_order() -> None:
    items = [item(sku="S-1", grade="A"), item(sku="S-2", grade="D")]
    movements = movements_for("RMA-1", "WH-1", items)
    assert [m["sku"] for m in movements] == ["S-1", "S-2"]


def test_movement_location_is_warehouse_slash_disposition() -> None:
    items = [item(sku="S-1", grade="A"), item(sku="S-2", grade="B", matches_order=False)]
    movements = movements_for("RMA-1", "WH-9", items)
    assert [m["location"] for m in movements] == ["WH-9/RESTOCK_SELLABLE", "WH-9/QUARANTINE"]
    assert [m["disposition"] for m in movements] == ["RESTOCK_SELLABLE", "QUARANTINE"]


def test_every_movement_moves_one_unit_in() -> None:
    movements = movements_for("RMA-1", "WH-1", [item(grade=g) for g in "ABCDX"])
    assert [m["quantity"] for m in movements] == [1, 1, 1, 1, 1]


def test_movement_id_names_return_step_index_and_sku() -> None:
    (movement,) = movements_for("RMA-7", "WH-1", [item(sku="TS-M")])
    assert movement["movement_id"] == "RMA-7-intake-1-TS-M"


def test_movement_ids_contain_return_id_and_one_based_item_index() -> None:
    movements = movements_for("RMA-7", "WH-1", [item(sku="X"), item(sku="Y"), item(sku="Z")])
    for index, movement in enumerate(movements, start=1):
        assert movement["movement_id"].startswith("RMA-7-")
        assert f"-{index}-" in movement["movement_id"]


def test_movement_ids_differ_for_two_items_of_the_same_sku() -> None:
    movements = movements_for("RMA-1", "WH-1", [item(sku="SAME"), item(sku="SAME")])
    assert movements[0]["movement_id"] != movements[1]["movement_id"]


def test_movement_ids_are_deterministic_across_replays() -> None:
    items = [item(sku="S-1"), item(sku="S-2", grade="C")]
    assert movements_for("RMA-1", "WH-1", items) == movements_for("RMA-1", "WH-1", items)


def test_movement_ids_differ_between_returns() -> None:
    items = [item(sku="S-1")]
    first = movements_for("RMA-1", "WH-1", items)[0]["movement_id"]
    second = movements_for("RMA-2", "WH-1", items)[0]["movement_id"]
    assert first != second


def test_no_items_give_no_movements() -> None:
    assert movements_for("RMA-1", "WH-1", []) == []


def test_movements_do_not_modify_the_items() -> None:
    items = [item(sku="S-1")]
    before = [dict(i) for i in items]
    movements_for("RMA-1", "WH-1", items)
    assert items == before


def test_movements_encode_as_intake_completed(codec: AvroCodec) -> None:
    items = [item(grade=g, sku=f"S-{g}") for g in ["A", "B", "C", "D", "?"]]
    items.append(item(matches_order=False))
    record = {
        "envelope": envelope("IntakeCompleted", "RMA-1"),
        "warehouse_id": "WH-1",
        "movements": movements_for("RMA-1", "WH-1", items),
    }
    assert codec.decode(codec.encode("IntakeCompleted", record)).record == record


inspected_items = st.builds(
    item,
    grade=st.sampled_from(["A", "B", "C", "D", "UNKNOWN", "", "z"]),
    matches_order=st.booleans(),
    measured=st.integers(0, 10**7),
    expected=st.none() | st.integers(0, 10**7),
    sku=st.text(min_size=1, max_size=12),
)


@given(
    return_id=st.text(min_size=1, max_size=12),
    items=st.lists(inspected_items, max_size=30),
)
def test_every_item_gets_exactly_one_movement_with_an_allowed_disposition(
    return_id: str, items: list[dict[str, Any]]
) -> None:
    movements = movements_for(return_id, "WH-1", items)
    assert len(movements) == len(items)
    assert len({m["movement_id"] for m in movements}) == len(items)
    for raw, movement in zip(items, movements, strict=True):
        assert movement["disposition"] in ALLOWED_DISPOSITIONS
        assert movement["disposition"] == decide(raw).disposition
        assert movement["sku"] == raw["sku"]
        assert movement["quantity"] == 1
        assert movement["movement_id"].startswith(return_id)


# --- disposition rules as data (deploy/stock/dispositions.yaml) -------------------------

DEPLOYED_RULES = load_disposition_rules()


def facts(**changes) -> ItemFacts:
    return ItemFacts(
        **{
            "category": "apparel",
            "unit_value_minor": 5000,
            "currency": "EUR",
            "market": "DE",
            "days_since_delivery": 10,
            **changes,
        }
    )


@pytest.mark.parametrize(
    ("grade", "changes", "wanted"),
    [
        ("C", {"unit_value_minor": 999}, ("LIQUIDATE", "low-value-damaged")),
        ("D", {"unit_value_minor": 1499}, ("LIQUIDATE", "low-value-damaged")),
        ("C", {"unit_value_minor": 1500}, ("RETURN_TO_VENDOR", "grade-C")),
        ("C", {"unit_value_minor": 999, "currency": "CHF"}, ("RETURN_TO_VENDOR", "grade-C")),
        ("B", {"days_since_delivery": 91}, ("LIQUIDATE", "aged-opened-stock")),
        ("B", {"days_since_delivery": 90}, ("REFURBISH", "grade-B")),
        ("B", {"unit_value_minor": 700}, ("LIQUIDATE", "low-value-opened")),
        ("A", {"category": "electronics"}, ("REFURBISH", "opened-electronics-refurbish")),
        ("A", {}, ("RESTOCK_SELLABLE", "grade-A")),
        ("X", {}, ("QUARANTINE", "grade-unknown")),
    ],
)
def test_the_deployed_rules_liquidate_low_value_and_aged_stock(grade, changes, wanted):
    decision = decide(item(grade=grade), facts(**changes), DEPLOYED_RULES)
    assert (decision.disposition, decision.rule) == wanted


@settings(max_examples=300, deadline=None)
@given(
    grade=st.sampled_from(["A", "B", "C", "D", "X"]),
    matches=st.booleans(),
    value=st.one_of(st.none(), st.integers(0, 10**7)),
    currency=st.sampled_from(["EUR", "GBP", "IDR", "KWD", "CHF", ""]),
    days=st.one_of(st.none(), st.integers(0, 400)),
    category=st.sampled_from(["apparel", "electronics", ""]),
)
def test_identity_comes_before_any_rule_and_every_item_has_one_disposition(
    grade, matches, value, currency, days, category
):
    found = decide(
        item(grade=grade, matches_order=matches),
        ItemFacts(category, value, currency, "DE", days),
        DEPLOYED_RULES,
    )
    assert found.disposition in DISPOSITIONS
    if not matches:
        assert found == Decision("QUARANTINE", "item-does-not-match-order")
    if found.disposition == "LIQUIDATE":
        assert value is not None or days is not None  # only the order's facts liquidate


def test_wrong_rules_are_refused_naming_the_problem():
    data = yaml.safe_load(Path("deploy/stock/dispositions.yaml").read_text())
    data["rules"][0]["disposition"] = "SELL_ON_EBAY"
    data["rules"][1]["grades"] = ["Z"]
    data["by_grade"].pop("D")
    with pytest.raises(DispositionRulesError) as refused:
        parse_disposition_rules(data)
    message = str(refused.value)
    assert "rules[0].disposition" in message and "rules[1].grades" in message
    assert "by_grade" in message


def test_the_facts_come_from_the_intake_command_and_its_age_from_its_time():
    command = {
        "envelope": {"occurred_at": 100 * 86_400_000},
        "market": "DE",
        "delivered_at": 5 * 86_400_000,
        "item_facts": [
            {"sku": "S", "category": "apparel", "unit_price_minor": 900, "currency": "EUR"}
        ],
    }
    assert item_facts_of(command) == {"S": ItemFacts("apparel", 900, "EUR", "DE", 95)}
    [moved] = movements_for(
        "RMA-1", "WH-1", [item(sku="S", grade="B")], item_facts_of(command), DEPLOYED_RULES
    )
    assert moved["disposition"] == "LIQUIDATE"
