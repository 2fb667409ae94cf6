"""`boomerang policy explain`: the example returns in deploy/policy-examples, and bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.cli_process import run_python_module

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "deploy" / "policy-examples"


def explain(path: Path) -> subprocess.CompletedProcess:
    return run_python_module("services.cli", "policy", "explain", str(path))


def explain_written(tmp_path: Path, content: str) -> subprocess.CompletedProcess:
    """`policy explain` of a request file holding `content`."""
    request = tmp_path / "request.json"
    request.write_text(content)
    return explain(request)


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def answer(name: str) -> dict:
    result = explain(EXAMPLES / name)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _sum_check(refund: dict) -> None:
    for line in refund["lines"]:
        assert line["amount_minor"] == (
            line["goods_minor"]
            + line["tax_minor"]
            + line["shipping_minor"]
            - line["return_shipping_minor"]
            - line["restocking_fee_minor"]
            - line["damage_deduction_minor"]
        )
    assert refund["total_minor"] == sum(line["amount_minor"] for line in refund["lines"])


def test_seller_fault_with_a_voucher_in_idr():
    decision = answer("seller-fault-voucher-idr.json")
    assert decision["accepted"] is True
    assert decision["liability"]["liable"] == "SELLER"
    [line] = decision["refund"]["lines"]
    # the 50,000 voucher split over 749,000 and 118,000 of goods: 43,195 to the earbuds
    assert (line["gross_minor"], line["discount_minor"]) == (749000, 43195)
    assert line["shipping_minor"] == 6000  # a third of 18,000 (1 of 3 units)
    assert decision["refund"]["total"] == "711805 IDR"
    assert decision["destination"]["method"] == "EWALLET"
    rule_ids = [rule["rule_id"] for rule in decision["rules_fired"]]
    assert "liability.fault_claim_upheld" in rule_ids and "policy.reasons" in rule_ids
    _sum_check(decision["refund"])


def test_buyer_remorse_with_a_restocking_fee_in_eur():
    decision = answer("buyer-remorse-restocking-eur.json")
    assert decision["liability"]["liable"] == "BUYER"
    [line] = decision["refund"]["lines"]
    assert line["goods_minor"] == 22499
    assert line["restocking_fee_minor"] == 3374  # 15 % of 224.99, rounded in the buyer's favour
    assert line["return_shipping_minor"] == 495
    assert line["shipping_minor"] == 0
    assert decision["refund"]["total"] == "186.30 EUR"
    assert decision["destination"] == {
        "method": "CARD",
        "paid_with": "CARD",
        "needs_bank_account": False,
        "deadline_days": 10,
    }
    _sum_check(decision["refund"])


def test_a_three_decimal_kwd_partial_return_after_an_earlier_one():
    decision = answer("partial-return-kwd.json")
    refund = decision["refund"]
    assert refund["total"] == "23.717 KWD"
    assert refund["order_paid_minor"] == 39625
    assert refund["refunded_for_order_after_this_minor"] == 4048 + 23717
    assert decision["destination"]["method"] == "EWALLET"  # cash on delivery → wallet
    _sum_check(refund)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ('{"market": "ID"}', "'seller_id' is a required property"),
    ],
)
def test_an_invalid_file_exits_non_zero_and_says_why(tmp_path, content, message):
    result = explain_written(tmp_path, content)
    assert result.returncode != 0
    assert message in result.stderr
    assert result.stdout == ""


def test_a_wrong_field_is_named_by_its_path(tmp_path):
    request = example("partial-return-kwd.json")
    request["order"]["lines"][1]["unit_price_minor"] = 41.25
    result = explain_written(tmp_path, json.dumps(request))
    assert result.returncode != 0
    assert "order.lines.1.unit_price_minor: 41.25 is not of type 'integer'" in result.stderr


def test_returning_more_than_was_bought_is_an_input_error(tmp_path):
    request = example("partial-return-kwd.json")
    request["return"]["lines"] = [{"line_id": "L2", "quantity": 1}]  # L2 was returned before
    result = explain_written(tmp_path, json.dumps(request))
    assert result.returncode != 0
    assert "returning 1 after 1 of 1 bought" in result.stderr


def test_a_missing_file_is_a_clear_error(tmp_path):
    result = explain(tmp_path / "nope.json")
    assert result.returncode != 0
    assert "nope.json" in result.stderr
