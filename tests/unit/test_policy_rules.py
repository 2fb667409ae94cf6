"""Policy decisions: precedence of layers, request checks, fees, destinations, rules fired."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.decisions.policy.liability import (
    Grade,
    InspectionFacts,
    ReasonFamily,
    RefundOutcome,
    decide_liability,
)
from services.decisions.policy.policy_rules import (
    DAY_MS,
    EffectivePolicy,
    PolicyLookupError,
    RequestFacts,
    decide_request,
    fee_terms,
    liability_terms,
    refund_destination,
    resolve_policy,
)
from services.decisions.refunds.order_model import Liable
from services.policy_files.loader import load_policy_set

POLICIES = load_policy_set(Path(__file__).resolve().parents[2] / "deploy" / "policies")
T0 = 1_795_000_000_000


def policy(market="ID", category="shoes", seller="S-1") -> EffectivePolicy:
    return resolve_policy(POLICIES, market, category, seller)


def facts(category="shoes", reason="CHANGED_MIND", age_days=3, photos=0) -> RequestFacts:
    return RequestFacts(category, reason, T0, T0 + age_days * DAY_MS + 3600_000, photos)


# ------------------------------------------------------------------ precedence


def test_market_then_category_then_seller():
    effective = policy("ID", "electronics", "S-20")
    assert effective.version == (
        "ID/market:default@v1+ID/category:electronics@v1+ID/seller:S-20@v1"
    )
    assert effective.rules["return_window_days"] == 7  # from the category
    assert effective.rules["reasons"]["DEFECTIVE"]["photos_required"] == 2  # category
    assert effective.rules["reasons"]["CHANGED_MIND"]["family"] == "BUYER_REMORSE"  # market
    assert effective.rules["return_shipping"]["payer"]["BUYER"] == "SELLER"  # seller
    assert effective.rules["return_shipping"]["fee_minor"] == 15000  # market, kept by the merge
    assert effective.provenance["return_shipping"] == "ID/seller:S-20@v1"


def test_without_overrides_the_market_default_applies():
    effective = policy("DE", "books", "S-9")
    assert effective.version == "DE/market:default@v1"
    assert effective.currency == "EUR"


def test_an_unknown_market_has_no_policy():
    with pytest.raises(PolicyLookupError, match="no return policy for market 'FR'"):
        policy("FR")


def test_the_effective_policy_survives_a_round_trip_as_a_record():
    effective = policy("ID", "electronics", "S-20")
    assert EffectivePolicy.from_record(effective.to_record()) == effective


# ------------------------------------------------------------------ the request


def test_an_acceptable_request_lists_every_check_it_passed():
    decision = decide_request(policy(), facts())
    assert decision.accepted and decision.family == ReasonFamily.BUYER_REMORSE
    assert [rule.rule_id for rule in decision.rules_fired] == [
        "policy.returnable",
        "policy.reasons",
        "policy.return_window_days",
    ]
    window = decision.rules_fired[-1]
    assert window.facts["days_since_delivery"] == 3 and window.facts["window_days"] == 15
    assert window.facts["set_by"] == "ID/market:default@v1"


@pytest.mark.parametrize(
    ("args", "code", "detail"),
    [
        ({"category": "perishables"}, "NON_RETURNABLE_CATEGORY", "cannot be returned"),
        ({"reason": "BORED"}, "REASON_NOT_ALLOWED", "'BORED'"),
        ({"age_days": 16}, "OUTSIDE_RETURN_WINDOW", "16 days ago; the window is 15"),
        ({"age_days": -3}, "NOT_DELIVERED", "in the future"),
        ({"reason": "DEFECTIVE"}, "EVIDENCE_REQUIRED", "needs 1 photo(s), got 0"),
    ],
)
def test_each_rejection_has_its_code_and_the_rule_that_fired(args, code, detail):
    category = args.get("category", "shoes")
    decision = decide_request(policy(category=category), facts(**args))
    assert not decision.accepted
    assert decision.rejection_code == code
    assert detail in decision.detail
    assert decision.rules_fired[-1].effect == decision.detail


def test_the_window_is_inclusive_of_its_last_day():
    assert decide_request(policy(), facts(age_days=15)).accepted
    assert decide_request(policy(category="electronics"), facts("electronics", age_days=7)).accepted
    electronics_late = decide_request(policy(category="electronics"), facts(age_days=8))
    assert electronics_late.rejection_code == "OUTSIDE_RETURN_WINDOW"


def test_a_category_asks_for_more_evidence_than_its_market():
    one_photo = facts("electronics", "DEFECTIVE", photos=1)
    assert decide_request(policy(category="electronics"), one_photo).rejection_code == (
        "EVIDENCE_REQUIRED"
    )
    two = facts("electronics", "DEFECTIVE", photos=2)
    assert decide_request(policy(category="electronics"), two).accepted


# ------------------------------------------------------------------ fees and destination


def _liability(policy_, family, grade, **inspection):
    return decide_liability(
        family, False, InspectionFacts(grade, **inspection), liability_terms(policy_)
    )


def test_buyer_remorse_pays_return_shipping_and_the_grade_restocking_fee():
    effective = policy("DE", "electronics", "S-7")
    liability = _liability(effective, ReasonFamily.BUYER_REMORSE, Grade.B)
    fees, fired = fee_terms(effective, liability, Grade.B)
    assert (fees.return_shipping_fee_minor, fees.restocking_fee_bp) == (495, 1500)
    assert [rule.rule_id for rule in fired] == ["policy.return_shipping", "policy.restocking_fee"]


def test_a_seller_offering_free_returns_pays_return_shipping_for_remorse():
    effective = policy("ID", "shoes", "S-20")
    liability = _liability(effective, ReasonFamily.BUYER_REMORSE, Grade.A)
    fees, fired = fee_terms(effective, liability, Grade.A)
    assert fees.return_shipping_fee_minor == 0
    assert fired[0].effect == "return shipping paid by SELLER"


def test_seller_fault_charges_the_buyer_nothing():
    effective = policy("DE", "electronics", "S-7")
    liability = _liability(effective, ReasonFamily.SELLER_FAULT, Grade.C)
    fees, _ = fee_terms(effective, liability, Grade.C)
    assert fees.return_shipping_fee_minor == fees.restocking_fee_bp == 0


def test_damage_by_the_buyer_reduces_or_rejects_per_market():
    de = policy("DE")
    reduced = _liability(de, ReasonFamily.BUYER_REMORSE, Grade.D)
    assert reduced.refund == RefundOutcome.REDUCED
    assert fee_terms(de, reduced, Grade.D)[0].damage_deduction_bp == 5000
    kw = policy("KW")
    assert _liability(kw, ReasonFamily.BUYER_REMORSE, Grade.D).refund == RefundOutcome.NONE


@pytest.mark.parametrize(
    ("market", "paid_with", "store_credit", "method", "deadline"),
    [
        ("ID", "CARD", False, "CARD", 14),
        ("ID", "EWALLET", False, "EWALLET", 1),
        ("ID", "BNPL", False, "BNPL", 7),
        ("ID", "DIRECT_DEBIT", False, "DIRECT_DEBIT", 5),
        ("ID", "VIRTUAL_ACCOUNT", False, "BANK_TRANSFER", 3),
        ("ID", "COD", False, "EWALLET", 1),
        ("DE", "COD", False, "BANK_TRANSFER", 3),
        ("ID", "CARD", True, "STORE_CREDIT", 0),
    ],
)
def test_money_goes_back_the_way_it_was_paid(market, paid_with, store_credit, method, deadline):
    destination = refund_destination(policy(market), paid_with, store_credit)
    assert (destination.method, destination.deadline_days) == (method, deadline)
    assert destination.needs_bank_account == (method == "BANK_TRANSFER")
    assert destination.rule.facts["paid_with"] == paid_with


def test_liability_under_the_policy_of_the_return():
    assert _liability(policy("ID"), ReasonFamily.SELLER_FAULT, Grade.A).liable == Liable.BUYER
