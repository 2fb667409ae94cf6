"""Seller governance (pure): flagged against category peers, lifted only after a calm
spell, never flapping at a threshold."""

from __future__ import annotations

import shutil

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from services.decisions.policy.policy_rules import resolve_policy
from services.decisions.risk.seller_standing import (
    GovernanceTerms,
    PeerRates,
    SellerRates,
    Standing,
    next_standing,
)
from services.decisions.risk.standing_policy import standing_layer
from services.policy_files.loader import DEFAULT_POLICY_DIR, load_policy_set

TERMS = GovernanceTerms()


def peers_around(rate: float, sellers: int = 50) -> dict[str, PeerRates]:
    peer = PeerRates()
    for n in range(sellers):
        peer.add(rate + (n % 5 - 2) / 100)  # a spread of ±2 points
    return {"return_rate": peer}


def test_a_seller_far_above_its_peers_is_watched_then_on_probation() -> None:
    peers = peers_around(0.10)
    watched = next_standing(Standing.GOOD, 0, SellerRates({"return_rate": 0.17}, 80), peers, TERMS)
    assert watched.standing is Standing.WATCH
    assert "percentile" in watched.reasons[0] and "median" in watched.reasons[0]
    worse = next_standing(Standing.WATCH, 0, SellerRates({"return_rate": 0.30}, 80), peers, TERMS)
    assert worse.standing is Standing.PROBATION
    honest = next_standing(Standing.GOOD, 0, SellerRates({"return_rate": 0.11}, 80), peers, TERMS)
    assert honest.standing is Standing.GOOD and honest.reasons == ()


def test_too_few_returns_or_peers_flag_nobody() -> None:
    few = next_standing(
        Standing.GOOD, 0, SellerRates({"return_rate": 0.9}, 3), peers_around(0.1), TERMS
    )
    assert few.standing is Standing.GOOD
    lonely = next_standing(
        Standing.GOOD, 0, SellerRates({"return_rate": 0.9}, 80), peers_around(0.1, sellers=3), TERMS
    )
    assert lonely.standing is Standing.GOOD


def test_a_flag_lifts_one_step_after_a_calm_spell_only() -> None:
    peers = peers_around(0.10)
    standing, calm = Standing.PROBATION, 0
    for _ in range(TERMS.calm_days - 1):
        decision = next_standing(
            standing, calm, SellerRates({"return_rate": 0.10}, 80), peers, TERMS
        )
        standing, calm = decision.standing, decision.calm_days
    assert standing is Standing.PROBATION  # not yet
    decision = next_standing(standing, calm, SellerRates({"return_rate": 0.10}, 80), peers, TERMS)
    assert decision.standing is Standing.WATCH and decision.calm_days == 0  # one step down


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-0.01, 0.01, allow_nan=False), min_size=30, max_size=90))
def test_a_seller_hovering_at_the_threshold_is_not_flagged_and_lifted_every_day(jitter) -> None:
    peers = peers_around(0.10)
    standing, calm, changes = Standing.GOOD, 0, 0
    for wobble in jitter:  # around the watch level (1.5× the median, 10 %)
        decision = next_standing(
            standing, calm, SellerRates({"return_rate": 0.15 + wobble}, 80), peers, TERMS
        )
        changes += decision.standing is not standing
        standing, calm = decision.standing, decision.calm_days
    assert changes <= 1  # flagged once at most: hovering never counts as recovered


def test_a_flagged_sellers_layer_loads_with_the_policies_and_tightens_them(tmp_path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, policies)
    market = load_policy_set(policies)
    window = resolve_policy(market, "DE", "home", "S-bad").rules["return_window_days"]
    watch = standing_layer("DE", "S-bad", Standing.WATCH, window)
    probation = standing_layer("DE", "S-bad", Standing.PROBATION, window, watch)
    assert watch is not None and probation is not None
    assert (watch["version"], probation["version"]) == (1, 2)
    assert standing_layer("DE", "S-bad", Standing.PROBATION, window, probation) == probation
    assert standing_layer("DE", "S-bad", Standing.GOOD, window) is None

    (policies / "DE" / "seller-S-bad.yaml").write_text(yaml.safe_dump(probation))
    tightened = resolve_policy(load_policy_set(policies), "DE", "home", "S-bad")
    assert tightened.rules["return_window_days"] == window + 14
    assert tightened.rules["return_shipping"]["payer"]["BUYER"] == "SELLER"
    other = resolve_policy(load_policy_set(policies), "DE", "home", "S-good")
    assert other.rules["return_window_days"] == window
