"""Risk rules (pure): the rolling windows stay bounded and expire after a rebuild; rule
sets parse from data with errors that say where; a decision sums the rules that fired,
names their inputs, never fires on a missing input; shadow comparisons and back-tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from services.decisions.risk.backtest import Judged, backtest
from services.decisions.risk.return_features import known_features
from services.decisions.risk.rolling_counts import DAY_MS, DISTINCT_CAP, RollingCounts
from services.decisions.risk.rule_sets import (
    Outcome,
    RuleSetError,
    compare_shadow,
    parse_rule_set,
)
from tests.support.cli_process import run_python_module

LIVE = Path(__file__).resolve().parents[2] / "deploy" / "risk" / "live.yaml"
T0 = 20_000 * DAY_MS  # an event time: day 20,000


def test_windows_sum_the_days_they_cover() -> None:
    counts = RollingCounts(horizon_days=365)
    for day in range(0, 400, 10):
        counts.add(T0 + day * DAY_MS, {"returns": 1})
    as_of = T0 + 399 * DAY_MS
    assert counts.total("returns", as_of, 30) == 3  # days 370, 380, 390
    assert counts.total("returns", as_of, 365) == 36  # days 40 .. 390
    with pytest.raises(ValueError):
        counts.total("returns", as_of, 400)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 2_000), min_size=1, max_size=200), st.integers(1, 90))
def test_a_key_never_holds_more_days_than_its_horizon(days: list[int], horizon: int) -> None:
    counts = RollingCounts(horizon_days=horizon)
    for day in days:
        counts.add(T0 + day * DAY_MS, {"n": 1})
        assert len(counts.days) <= horizon
    newest = max(days)
    kept = sum(1 for day in days if day > newest - horizon)
    # an event older than the horizon behind the newest day is not counted at all
    assert counts.total("n", T0 + newest * DAY_MS, horizon) <= kept


def test_a_rebuilt_key_expires_as_if_it_had_run_all_along() -> None:
    counts = RollingCounts(horizon_days=30)
    counts.add(T0, {"returns": 2}, {"buyers": "B-1"})
    stored = counts.to_json()
    later = RollingCounts.from_json(stored, today_ms=T0 + 45 * DAY_MS)
    assert later.days == {}  # 45 days on, nothing is in any window: nothing is kept
    same_day = RollingCounts.from_json(stored, today_ms=T0)
    assert same_day.total("returns", T0, 30) == 2
    assert same_day.distinct("buyers", T0, 30) == (1, False)


def test_distinct_members_are_capped_per_day_and_say_so() -> None:
    counts = RollingCounts(horizon_days=90)
    for n in range(DISTINCT_CAP + 5):
        counts.add(T0, members={"buyers": f"B-{n}"})
    counts.add(T0, members={"buyers": "B-1"})
    assert counts.distinct("buyers", T0, 90) == (DISTINCT_CAP, True)


RULES = {
    "rule_set": "risk",
    "version": 2,
    "outcomes": {"review": 30, "hold": 60, "decline": 100},
    "rules": [
        {"id": "many", "score": 35, "when": {"feature": "buyer.returns_365d", ">=": 8}},
        {"id": "empty", "score": 70, "when": {"feature": "item.weight_ratio", "<": 0.3}},
        {
            "id": "worn-apparel",
            "score": 40,
            "reason": "worn items cannot be returned",
            "when": {
                "all": [
                    {"feature": "item.category", "in": ["apparel", "shoes"]},
                    {"not": {"feature": "item.worn", "==": False}},
                ]
            },
        },
    ],
}


def test_a_decision_sums_what_fired_and_names_its_inputs() -> None:
    rules = parse_rule_set(RULES)
    quiet = rules.decide({"buyer.returns_365d": 2, "item.weight_ratio": 1.0})
    assert (quiet.outcome, quiet.score, quiet.fired) == (Outcome.APPROVE, 0, ())
    held = rules.decide({"buyer.returns_365d": 9, "item.weight_ratio": 0.1})
    assert (held.outcome, held.score) == (Outcome.DECLINE, 105)
    assert [(f.rule_id, f.inputs) for f in held.fired] == [
        ("many", {"buyer.returns_365d": 9}),
        ("empty", {"item.weight_ratio": 0.1}),
    ]
    assert held.reason == "the return cannot be accepted"  # "empty" gave no buyer reason
    worn = rules.decide({"item.category": "apparel", "item.worn": True, "buyer.returns_365d": 8})
    assert worn.outcome is Outcome.HOLD and worn.score == 75


def test_a_rule_never_fires_on_a_missing_input_and_the_decision_says_what_was_missing() -> None:
    decision = parse_rule_set(RULES).decide({"item.category": "apparel"})
    assert decision.fired == ()  # `not worn == false` needs item.worn
    assert decision.missing == ("buyer.returns_365d", "item.weight_ratio", "item.worn")


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "buyer.returns_365d": st.integers(0, 50),
            "item.weight_ratio": st.floats(0, 2, allow_nan=False),
            "item.category": st.sampled_from(["apparel", "home", "shoes"]),
            "item.worn": st.booleans(),
        },
    ),
    st.integers(0, 50),
)
def test_more_evidence_never_lowers_the_outcome(features: dict, extra: int) -> None:
    rules = parse_rule_set(RULES)
    before = rules.decide(features)
    worse = {**features, "buyer.returns_365d": features.get("buyer.returns_365d", 0) + extra}
    after = rules.decide(worse)
    order = list(Outcome)
    assert order.index(after.outcome) >= order.index(before.outcome)
    assert before == rules.decide(dict(reversed(list(features.items()))))  # order-free


@pytest.mark.parametrize(
    ("broken", "says"),
    [
        ({**RULES, "version": 0}, "version"),
        ({**RULES, "outcomes": {"review": 30, "hold": 20, "decline": 100}}, "increasing"),
        ({**RULES, "rules": [{"id": "x", "score": 1, "when": {"feature": "a", "~": 1}}]}, "op"),
        ({**RULES, "rules": [{"id": "x", "score": 1, "when": {"all": []}}]}, "all"),
        ({**RULES, "rules": [RULES["rules"][0], RULES["rules"][0]]}, "unique"),
        ({**RULES, "rules": [{"id": "x", "score": -1, "when": {"feature": "a", "<": 1}}]}, "score"),
    ],
)
def test_a_broken_rule_set_is_refused_naming_what_is_wrong(broken: dict, says: str) -> None:
    with pytest.raises(RuleSetError, match=says):
        parse_rule_set(broken)


def test_the_deployed_rule_set_parses_and_holds_an_empty_box() -> None:
    live = parse_rule_set(yaml.safe_load(LIVE.read_text()), str(LIVE))
    assert live.decide({"item.weight_ratio": 0.05}).outcome is Outcome.HOLD
    assert live.decide({"item.weight_ratio": 0.95, "item.serial_shipped": True}).outcome is (
        Outcome.APPROVE
    )


def test_a_shadow_set_is_compared_rule_by_rule_and_back_tested() -> None:
    live = parse_rule_set(RULES)
    stricter = parse_rule_set(
        {**RULES, "version": 3, "outcomes": {"review": 20, "hold": 30, "decline": 100}}
    )
    features = {"buyer.returns_365d": 9}
    comparison = compare_shadow(live.decide(features), stricter.decide(features))
    assert (comparison.live, comparison.shadow, comparison.agrees) == (
        Outcome.REVIEW,
        Outcome.HOLD,
        False,
    )
    history = [
        Judged(live.decide({"buyer.returns_365d": 9}), True),
        Judged(live.decide({"buyer.returns_365d": 9}), False),
        Judged(live.decide({"item.weight_ratio": 0.1}), True),
        Judged(live.decide({"buyer.returns_365d": 1}), None),
    ]
    result = backtest(history, [rule.rule_id for rule in live.rules])
    quality = {q.rule_id: q for q in result.rules}
    assert (quality["many"].hits, quality["many"].precision, quality["many"].recall) == (
        2,
        0.5,
        0.5,
    )
    assert (quality["empty"].precision, quality["empty"].recall) == (1.0, 0.5)
    assert quality["worn-apparel"].hits == 0 and quality["worn-apparel"].precision is None
    assert result.outcomes == {"approve": 1, "hold": 1, "review": 2}


comparisons = st.builds(
    lambda feature, op, value: {"feature": feature, op: value},
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from([">=", ">", "<=", "<", "==", "!="]),
    st.integers(-3, 3),
)
conditions = st.recursive(
    comparisons,
    lambda inner: st.one_of(
        st.builds(lambda parts: {"all": parts}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda parts: {"any": parts}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda part: {"not": part}, inner),
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(conditions, st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(-3, 3)))
def test_no_condition_fires_without_the_inputs_it_reads(condition: dict, features: dict) -> None:
    rules = parse_rule_set({**RULES, "rules": [{"id": "r", "score": 50, "when": condition}]})
    decision = rules.decide(features)
    if decision.fired:
        # it fired on what it read; with those inputs gone it cannot fire
        read = set(decision.fired[0].inputs)
        assert not rules.decide({k: v for k, v in features.items() if k not in read}).fired
    assert not rules.decide({}).fired


def test_risk_check_lists_a_good_set_and_refuses_a_misspelt_feature(tmp_path) -> None:
    good = run_python_module("services.cli", "risk", "check", str(LIVE))
    assert (
        good.returncode == 0
        and "8 rules" in good.stdout
        and "reads item.weight_ratio" in good.stdout
    )
    typo = tmp_path / "typo.yaml"
    typo.write_text(LIVE.read_text().replace("buyer.returns_365d", "buyer.retrns_365d"))
    refused = run_python_module("services.cli", "risk", "check", str(typo))
    assert refused.returncode == 1 and "buyer.retrns_365d" in refused.stderr


def test_every_feature_the_deployed_rules_read_is_one_a_return_has() -> None:
    live = parse_rule_set(yaml.safe_load(LIVE.read_text()))
    read = set().union(*(rule.condition.features() for rule in live.rules))
    assert read <= known_features()


def test_history_lines_are_read_and_a_bad_line_is_refused_with_its_number(tmp_path):
    import click

    from services.risk.risk_commands import history_lines

    good = tmp_path / "history.jsonl"
    good.write_text(
        '{"name": "OrderPlaced", "at_ms": 5, "record": {"order": {}}}\n\n'
        '{"name": "SomethingElse", "at_ms": 6, "record": {}}\n'
    )
    [event] = history_lines(good)
    assert (event.name, event.at_ms) == ("OrderPlaced", 5)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"name": "OrderPlaced", "at_ms": 5, "record": {}}\nnot json\n')
    try:
        history_lines(bad)
    except click.ClickException as exc:
        assert "bad.jsonl:2" in exc.message
    else:
        raise AssertionError("a bad line was read")
