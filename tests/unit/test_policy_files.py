"""Policy files: validated on load, errors name the file, the path and the problem."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from services.policy_files.loader import PolicyError, build_policy_set, load_policy_set
from tests.support.cli_process import run_python_module

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "deploy" / "policies"

MARKET = """\
policy: return-policy/v1
scope: {market: ID}
version: 1
currency: IDR
rules:
  return_window_days: 15
  reasons:
    DEFECTIVE: {family: SELLER_FAULT, photos_required: 1}
    CHANGED_MIND: {family: BUYER_REMORSE}
  return_shipping: {fee_minor: 15000, payer: {BUYER: BUYER}}
  buyer_damage: REDUCE
  refund_deadline_days:
    {CARD: 14, EWALLET: 1, BNPL: 7, DIRECT_DEBIT: 5, BANK_TRANSFER: 3, STORE_CREDIT: 0}
  cod_refund_to: EWALLET
  decline_fallback: STORE_CREDIT
  exchange_out_of_stock: REFUND
"""


def problems(*files: tuple[str, str]) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        build_policy_set(files)
    return [str(problem) for problem in caught.value.problems]


def test_the_repository_policies_load():
    policies = load_policy_set(POLICIES)
    assert policies.markets == ["DE", "ID", "KW"]
    assert len(policies.layers) >= 8
    assert len(policies.digest) == 16


def test_a_valid_market_layer_loads():
    [layer] = build_policy_set([("ID/market.yaml", MARKET)]).layers
    assert (layer.market, layer.kind, layer.version, layer.currency) == ("ID", "market", 1, "IDR")
    assert layer.label == "ID/market:default@v1"


def test_a_wrong_value_is_named_by_file_and_path():
    bad = MARKET.replace("family: SELLER_FAULT", "family: SELLERS_FAULT")
    [problem] = problems(("ID/market.yaml", bad))
    assert problem.startswith("ID/market.yaml: rules.reasons.DEFECTIVE.family: ")
    assert "SELLERS_FAULT" in problem


def test_an_unknown_key_is_refused_not_ignored():
    bad = MARKET.replace("  buyer_damage: REDUCE", "  buyer_damage: REDUCE\n  windw_days: 3")
    [problem] = problems(("ID/market.yaml", bad))
    assert "rules" in problem and "windw_days" in problem


def test_a_negative_window_and_a_percentage_above_100_are_refused():
    bad = MARKET.replace("return_window_days: 15", "return_window_days: -1")
    bad += "  damage_deduction_bp: 12000\n"
    found = problems(("ID/market.yaml", bad))
    assert any("rules.return_window_days" in p for p in found)
    assert any("rules.damage_deduction_bp" in p and "10000" in p for p in found)


def test_the_buyer_cannot_be_made_to_pay_return_shipping_for_someone_elses_fault():
    bad = MARKET.replace("payer: {BUYER: BUYER}", "payer: {BUYER: BUYER, SELLER: BUYER}")
    assert bad != MARKET
    [problem] = problems(("ID/market.yaml", bad))
    assert problem.startswith("ID/market.yaml: rules.return_shipping.payer.SELLER: ")
    assert "'BUYER' is not one of" in problem


def test_broken_yaml_says_so():
    [problem] = problems(("ID/market.yaml", "policy: [unclosed"))
    assert problem.startswith("ID/market.yaml: (top): not valid YAML/JSON")


def test_a_market_layer_must_say_everything_the_others_fall_back_on():
    incomplete = MARKET.replace("  cod_refund_to: EWALLET\n", "")
    [problem] = problems(("ID/market.yaml", incomplete))
    assert problem == "ID/market.yaml: rules.cod_refund_to: a market's policy must set it"


def test_a_market_layer_must_give_the_refund_deadline_of_every_refund_method():
    incomplete = MARKET.replace(" BNPL: 7,", "")
    assert incomplete != MARKET
    [problem] = problems(("ID/market.yaml", incomplete))
    assert problem == (
        "ID/market.yaml: rules.refund_deadline_days.BNPL: "
        "a market's policy must give the refund deadline of every refund method"
    )


def test_a_category_needs_its_market_and_scopes_are_unique():
    category = "policy: return-policy/v1\nscope: {market: SG, category: shoes}\nversion: 1\n"
    category += "rules: {return_window_days: 7}\n"
    found = problems(("ID/market.yaml", MARKET), ("ID/again.yaml", MARKET), ("SG/c.yaml", category))
    assert "ID/again.yaml: scope: same scope as ID/market.yaml" in found
    assert "SG/c.yaml: scope.market: no market policy for SG" in found


def test_currency_belongs_to_markets_and_must_be_known():
    found = problems(("ID/market.yaml", MARKET.replace("currency: IDR", "currency: XYZ")))
    assert found == ["ID/market.yaml: currency: unknown currency 'XYZ'"]


def test_a_scope_cannot_be_both_category_and_seller():
    layer = "policy: return-policy/v1\nscope: {market: ID, category: shoes, seller: S-1}\n"
    layer += "version: 1\nrules: {return_window_days: 7}\n"
    found = problems(("ID/market.yaml", MARKET), ("ID/x.yaml", layer))
    assert any(p.startswith("ID/x.yaml: scope: ") for p in found)


def _check(directory: Path) -> subprocess.CompletedProcess:
    return run_python_module("services.cli", "policy", "check", str(directory))


def test_policy_check_passes_on_the_repository_policies():
    result = _check(POLICIES)
    assert result.returncode == 0, result.stderr
    assert "0 problems" in result.stdout


def test_policy_check_fails_with_every_problem_listed(tmp_path):
    (tmp_path / "market.yaml").write_text(MARKET.replace("version: 1", "version: 0"))
    (tmp_path / "broken.yaml").write_text("scope: {")
    result = _check(tmp_path)
    assert result.returncode == 1
    assert "policy-check: market.yaml: version: 0 is less than the minimum of 1" in result.stderr
    assert "policy-check: broken.yaml: (top): not valid YAML/JSON" in result.stderr
    assert "2 problem(s)" in result.stderr
