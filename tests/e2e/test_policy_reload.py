"""Changing a policy file while the services run affects only returns requested after it;
a bad file is refused and the previous policy stays active."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from services.tools.local_stack.stack import LocalStack
from tests.e2e.conftest import RELOAD_MARKET
from tests.e2e.scenario import (
    DE_RETURN_SHIPPING_MINOR,
    create_return,
    post_scan_when_ready,
    scan,
    wait_for_status,
)

GOODS_MINOR = 2 * 2599 + 1000  # scenario.return_body's returned lines


def active(http: httpx.Client, stack: LocalStack) -> dict:
    response = http.get(f"{stack.url('returns')}/policies")
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_policies(http, stack, done, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        seen = active(http, stack)
        if done(seen) or time.monotonic() > deadline:
            return seen
        time.sleep(0.25)


def refund_of(http, stack, return_id: str) -> dict:
    body, headers = scan(return_id)
    assert post_scan_when_ready(http, stack, body, headers).status_code == 202
    return wait_for_status(http, stack, return_id, {"COMPLETED"})["refund"]


def test_a_changed_policy_decides_only_new_returns_and_a_bad_one_is_refused(
    stack, http, policy_dir: Path
):
    market_file = policy_dir / RELOAD_MARKET / "market.yaml"
    original = market_file.read_text()
    before = active(http, stack)
    assert f"{RELOAD_MARKET}/market:default@v1" in before["layers"]

    first = create_return(http, stack, market=RELOAD_MARKET)  # WRONG_SIZE: buyer remorse

    market_file.write_text(
        original.replace("version: 1", "version: 2").replace("fee_minor: 495", "fee_minor: 995")
    )
    reloaded = wait_for_policies(http, stack, lambda s: s["policy_set"] != before["policy_set"])
    assert f"{RELOAD_MARKET}/market:default@v2" in reloaded["layers"], reloaded
    second = create_return(http, stack, market=RELOAD_MARKET)

    market_file.write_text(original.replace("return_window_days: 30", "return_window_days: -3"))
    refused = wait_for_policies(http, stack, lambda s: s["rejected_problems"])
    assert refused["policy_set"] == reloaded["policy_set"]
    assert any("return_window_days" in problem for problem in refused["rejected_problems"])
    third = create_return(http, stack, market=RELOAD_MARKET)

    refunds = {rid: refund_of(http, stack, rid) for rid in (first, second, third)}
    assert refunds[first]["amount"]["amount_minor"] == GOODS_MINOR - DE_RETURN_SHIPPING_MINOR
    assert refunds[first]["policy_version"] == f"{RELOAD_MARKET}/market:default@v1"
    assert refunds[second]["amount"]["amount_minor"] == GOODS_MINOR - 995
    assert refunds[second]["policy_version"] == f"{RELOAD_MARKET}/market:default@v2"
    assert refunds[third]["amount"]["amount_minor"] == GOODS_MINOR - 995  # v2 stayed active
