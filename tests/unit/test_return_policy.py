"""The front-door return policy, decided by the deployed policy files (DE: 30-day window,
perishables/digital goods/gift cards not returnable, photos for damage on arrival)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.policy_files.loader import build_policy_set, policy_dir, policy_files
from services.returns.return_policy import (
    DAY_MS,
    PolicyDecision,
    PolicyFileRules,
    decide_return,
)
from services.returns.return_request import RequestLine, ReturnRequest
from services.tools.local_stack.drawn_returns import request_of
from tests.support.policies import FixedPolicies, deployed_policies, deployed_rules

DELIVERED = 1_790_000_000_000
POLICY = deployed_rules()
REQUEST = ReturnRequest(
    order_ref="ORD-1",
    buyer_id="B-1",
    seller_id="S-1",
    category="apparel",
    market="DE",
    reason_code="WRONG_SIZE",
    delivered_at_ms=DELIVERED,
    payment_method="CARD",
    lines=(RequestLine("TS-M", 1, 1, 1999, "EUR", "L1"),),
)


def decide(*, days: int = 0, extra_ms: int = 0, category: str = "apparel") -> PolicyDecision:
    """The decision `days` days (plus `extra_ms`) after delivery."""
    request = replace(REQUEST, category=category)
    return POLICY.decide(request, DELIVERED + days * DAY_MS + extra_ms)


def test_day_ms_is_one_day() -> None:
    assert DAY_MS == 86_400_000


def test_return_on_the_day_of_delivery_is_accepted() -> None:
    assert decide(days=0).accepted is True


def test_day_30_is_accepted() -> None:
    assert decide(days=30).accepted is True


def test_last_millisecond_of_day_30_is_accepted() -> None:
    assert decide(days=31, extra_ms=-1).accepted is True


def test_day_31_is_rejected_as_outside_the_window() -> None:
    decision = decide(days=31)
    assert decision.accepted is False
    assert decision.rejection_code == "OUTSIDE_RETURN_WINDOW"
    assert decision.rules_fired[-1] == "policy.return_window_days"
    assert "31 days" in decision.detail
    assert "30 days" in decision.detail


def test_a_year_later_is_rejected_as_outside_the_window() -> None:
    assert decide(days=365).rejection_code == "OUTSIDE_RETURN_WINDOW"


def policies_with_de_window(days: int):
    directory = policy_dir()
    texts = []
    for path in policy_files(directory):
        text = path.read_text()
        if path.name == "market.yaml" and path.parent.name == "DE":
            text = text.replace("return_window_days: 30", f"return_window_days: {days}")
        texts.append((str(path.relative_to(directory)), text))
    return build_policy_set(texts)


def test_a_longer_window_accepts_day_31() -> None:
    policy = PolicyFileRules(FixedPolicies(policies_with_de_window(60)))
    assert policy.decide(REQUEST, DELIVERED + 31 * DAY_MS).accepted is True
    assert policy.decide(REQUEST, DELIVERED + 61 * DAY_MS).rejection_code == (
        "OUTSIDE_RETURN_WINDOW"
    )


@pytest.mark.parametrize("category", ["perishables", "digital_goods", "gift_cards"])
def test_non_returnable_category_is_rejected(category: str) -> None:
    decision = decide(category=category)
    assert decision.accepted is False
    assert decision.rejection_code == "NON_RETURNABLE_CATEGORY"
    assert decision.rules_fired == ("policy.returnable",)
    assert category in decision.detail


def test_non_returnable_category_is_rejected_even_inside_the_window() -> None:
    assert decide(days=1, category="perishables").rejection_code == "NON_RETURNABLE_CATEGORY"


def test_non_returnable_category_wins_over_an_expired_window() -> None:
    assert decide(days=90, category="gift_cards").rejection_code == "NON_RETURNABLE_CATEGORY"


def test_category_written_in_capitals_by_the_buyer_is_still_non_returnable() -> None:
    body = {
        "order_ref": "ORD-1",
        "buyer_id": "B-1",
        "seller_id": "S-1",
        "category": "Perishables",
        "market": "DE",
        "reason_code": "DAMAGED",
        "delivered_at": "2026-11-20",
        "payment_method": "CARD",
        "pickup_address": "Musterstrasse 1",
        "lines": [
            {
                "sku": "MILK",
                "quantity": 1,
                "quantity_bought": 1,
                "unit_price": {"amount_minor": 199, "currency": "EUR"},
            }
        ],
    }
    request = request_of(body)
    decision = POLICY.decide(request, request.delivered_at_ms)
    assert decision.rejection_code == "NON_RETURNABLE_CATEGORY"


def test_delivery_more_than_a_day_in_the_future_is_rejected() -> None:
    decision = decide(days=-1, extra_ms=-1)
    assert decision.accepted is False
    assert decision.rejection_code == "NOT_DELIVERED"
    assert decision.rules_fired == (
        "policy.returnable",
        "policy.reasons",
        "policy.return_window_days",
    )


def test_delivery_far_in_the_future_is_rejected() -> None:
    assert decide(days=-100).rejection_code == "NOT_DELIVERED"


def test_delivery_exactly_one_day_ahead_is_tolerated_as_clock_skew() -> None:
    assert decide(days=-1).accepted is True


def test_delivery_a_few_hours_ahead_is_tolerated_as_clock_skew() -> None:
    assert decide(extra_ms=-3 * 3600 * 1000).accepted is True


def test_accepted_decision_lists_the_rules_that_let_it_through() -> None:
    decision = decide(days=3)
    assert decision.accepted is True
    assert decision.policy_version == "DE/market:default@v1"
    assert decision.rules_fired == (
        "policy.returnable",
        "policy.reasons",
        "policy.return_window_days",
    )
    assert decision.rules[2].facts["days_since_delivery"] == 3
    assert decision.reason_family == "BUYER_REMORSE"


def test_an_accepted_return_keeps_the_effective_policy_it_was_decided_under() -> None:
    snapshot = json.loads(decide(days=3, category="electronics").policy_json)
    assert snapshot["version"] == "DE/market:default@v1+DE/category:electronics@v1"
    assert snapshot["rules"]["restocking_fee"]["B"] == {"percent_bp": 1500}
    assert snapshot["currency"] == "EUR"


def test_rule_records_carry_facts_as_json() -> None:
    record = decide(days=3).rule_records()[2]
    assert record["rule_id"] == "policy.return_window_days"
    assert json.loads(record["facts_json"])["window_days"] == 30


def test_a_market_without_a_policy_is_rejected_with_the_reason() -> None:
    decision = POLICY.decide(replace(REQUEST, market="FR"), DELIVERED)
    assert (decision.accepted, decision.rejection_code) == (False, "MARKET_NOT_SERVED")
    assert "'FR'" in decision.detail


def test_a_currency_other_than_the_markets_is_rejected() -> None:
    line = RequestLine("TS-M", 1, 1, 1999, "USD", "L1")
    decision = POLICY.decide(replace(REQUEST, lines=(line,)), DELIVERED)
    assert decision.rejection_code == "CURRENCY_NOT_OF_MARKET"


def test_a_reason_the_market_does_not_know_is_rejected() -> None:
    decision = POLICY.decide(replace(REQUEST, reason_code="BORED"), DELIVERED)
    assert decision.rejection_code == "REASON_NOT_ALLOWED"


def test_damage_on_arrival_needs_a_photo_in_de() -> None:
    damaged = replace(REQUEST, reason_code="DAMAGED_ON_ARRIVAL")
    assert POLICY.decide(damaged, DELIVERED).rejection_code == "EVIDENCE_REQUIRED"
    with_photo = replace(damaged, photo_refs=("photo-1.jpg",))
    assert POLICY.decide(with_photo, DELIVERED).accepted is True


def test_the_decision_uses_the_set_it_is_given_each_time() -> None:
    assert decide_return(deployed_policies(), REQUEST, DELIVERED).accepted is True
    assert decide_return(policies_with_de_window(0), REQUEST, DELIVERED + DAY_MS).accepted is False


@pytest.mark.parametrize(
    ("days", "category"),
    [(0, "apparel"), (31, "apparel"), (-5, "apparel"), (0, "perishables")],
    ids=["accepted", "expired", "future", "non-returnable"],
)
def test_every_decision_carries_policy_version_and_rules_fired(days: int, category: str) -> None:
    decision = decide(days=days, category=category)
    assert decision.policy_version.startswith("DE/market:default@v1")
    assert decision.rules_fired
    assert all(isinstance(rule, str) and rule for rule in decision.rules_fired)


def test_policy_version_names_every_layer_used() -> None:
    assert decide(category="electronics").policy_version == (
        "DE/market:default@v1+DE/category:electronics@v1"
    )


def test_rejections_carry_a_code_and_a_detail() -> None:
    for decision in (decide(days=31), decide(days=-5), decide(category="perishables")):
        assert decision.rejection_code
        assert decision.detail


@given(age_ms=st.integers(-DAY_MS, 400 * DAY_MS))
def test_a_returnable_item_is_accepted_exactly_while_fewer_than_31_whole_days_have_passed(
    age_ms: int,
) -> None:
    decision = decide(extra_ms=age_ms)
    assert decision.accepted is (age_ms < 31 * DAY_MS)
