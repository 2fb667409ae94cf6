"""A short chaos run: `make test-chaos` (.ci/run runs it after `make test`; the full `make chaos`
runs 1,000 returns). It runs on a broker of its own, next to the suite's."""

from __future__ import annotations

import json
import os

import pytest

from tests.support.cli_process import run_python_module


@pytest.mark.chaos
@pytest.mark.timeout(1500)
def test_a_short_chaos_run_keeps_every_invariant():
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    result = run_python_module(
        "services.tools.local_stack.chaos", "--returns", "200", "--seed", "7", env=env, timeout=1200
    )
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr[-3000:]
    summary = json.loads(lines[-1])
    assert result.returncode == 0, (summary, result.stderr[-3000:])
    assert summary["terminal"] == summary["returns"] == 200
    assert summary["stuck"] == 0
    assert summary["refunds_at_psp"] == summary["refunds_expected"]
    assert summary["double_refunds"] == summary["double_stock_moves"] == 0
    assert summary["lost_events"] == 0
    assert summary["poison_in_dlq"] == summary["poison_written"] > 0
    assert summary["replay_new_refunds"] == summary["replay_new_stock_moves"] == 0
    assert summary["kills"] >= 12
    # settlement: killed twice, PostgreSQL crashed once
    assert summary["postgres_restarts"] == 1
    assert summary["ledger_balanced"] and summary["ledger_caught_up"]
    assert summary["ledger_entries_booked_twice"] == 0
    assert summary["ledger_refund_mismatches"] == 0  # each refund at a provider booked once
    assert summary["seller_debit_mismatches"] == 0 < summary["seller_liable_refunded"]
    assert summary["settlement_rejects_of_ours"] == summary["completions_waiting_for_order"] == 0
