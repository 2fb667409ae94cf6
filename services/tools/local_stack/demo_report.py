"""The demo's figures: what the services did with the drawn returns, checked against what
was foreseen (amounts, refund methods, liable parties), as a table and one JSON object."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from services.tools.local_stack.loop_driver import LoopDriver
from services.tools.local_stack.loop_records import refunds_paid

console = Console(stderr=True)
DISPUTE_KEY_SUFFIX = "-dispute-1"


def summarize(
    driver: LoopDriver,
    ledger: list[dict[str, Any]],
    wall_s: float,
    views: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The run's figures from the drivers' returns and the providers' `ledger`. `views` (the
    coordinator's, by return id) adds the liable party the system decided, checked against
    the one foreseen."""
    ours = {t.return_id: t for t in driver.tracked if t.return_id}
    paid = [r for r in refunds_paid(ledger, ours) if not is_dispute_refund(r)]
    per_return = Counter(r["return_id"] for r in paid)
    wrong_amounts = [r for r in paid if r["amount_minor"] != ours[r["return_id"]].expected_minor]
    wrong_methods = [r for r in paid if r["method"] != ours[r["return_id"]].expected_method]
    refunded_by_currency: Counter[str] = Counter()
    for refund in paid:
        refunded_by_currency[refund["currency"]] += refund["amount_minor"]
    completed = [t for t in driver.tracked if t.terminal == "ReturnCompleted"]
    decided = {
        t.return_id: ((views or {}).get(t.return_id, {}).get("liability") or {}).get("liable")
        for t in completed
    }
    wrong_liable = [
        t for t in completed if views is not None and decided[t.return_id] != t.expected_liable
    ]
    latencies = sorted(
        (t.refunded_at - t.requested_at) * 1000 for t in driver.tracked if t.refunded_at
    )

    def percentile(p: float) -> int:
        if not latencies:
            return 0
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))])

    return {
        "returns": len(driver.tracked),
        "completed": sum(t.terminal == "ReturnCompleted" for t in driver.tracked),
        # seeded abuse the system refused (at inspection, by the rules, or a reviewer)
        "rejected_as_abuse": sum(
            bool(t.abuse) and t.terminal == "ReturnFailed" for t in driver.tracked
        ),
        "refunds_expected": sum(t.expected_minor > 0 for t in completed),
        "refunds_at_psp": len(per_return),
        "refunded_minor_by_currency": dict(sorted(refunded_by_currency.items())),
        "duplicates_at_psp": sum(count - 1 for count in per_return.values()),
        "wrong_amounts": len(wrong_amounts),
        "wrong_methods": len(wrong_methods),
        "exchanges_completed": sum(t.expected_method == "EXCHANGE" for t in completed),
        "by_market": dict(Counter(t.body["market"] for t in driver.tracked)),
        "by_payment_method": dict(Counter(t.body["payment_method"] for t in driver.tracked)),
        "by_refund_method": dict(Counter(t.expected_method for t in completed)),
        "wrong_liable": len(wrong_liable) if views is not None else None,
        "by_liable_party": dict(
            Counter(decided[t.return_id] if views else t.expected_liable for t in completed)
        ),
        "by_reason": dict(Counter(t.body["reason_code"] for t in driver.tracked)),
        "p50_ms": round(statistics.median(latencies)) if latencies else 0,
        "p95_ms": percentile(0.95),
        "wall_s": round(wall_s, 1),
    }


def is_dispute_refund(refund: dict[str, Any]) -> bool:
    """A provider's refund of a dispute's difference (its key `{return_id}-dispute-1`)."""
    return str(refund.get("idempotency_key") or "").endswith(DISPUTE_KEY_SUFFIX)


def dispute_figures(driver: LoopDriver, ledger: list[dict[str, Any]]) -> dict[str, Any]:
    """The buyers' disputes: asked, opened (re-inspection asked), refused (refunded in
    full: nothing kept), decided (by decision); the differences the providers paid, each
    once and of the amount the saga decided."""
    ours = {t.return_id: t for t in driver.tracked if t.return_id}
    asked = [t for t in ours.values() if t.dispute]
    paid = [r for r in refunds_paid(ledger, ours) if is_dispute_refund(r)]
    per_return = Counter(r["return_id"] for r in paid)
    return {
        "disputes": sum(t.dispute in ("open", "decided") for t in asked),
        "disputes_asked": len(asked),
        "disputes_refused": sum(t.dispute == "refused" for t in asked),
        "disputes_decided": dict(Counter(t.dispute_decision for t in asked if t.dispute_decision)),
        "dispute_refunds_expected": sum(t.dispute_refunded_minor > 0 for t in asked),
        "dispute_refunds_at_psp": len(per_return),
        "dispute_duplicates_at_psp": sum(count - 1 for count in per_return.values()),
        "dispute_wrong_amounts": sum(
            r["amount_minor"] != ours[r["return_id"]].dispute_refunded_minor for r in paid
        ),
    }


def print_table(summary: dict[str, Any], driver: LoopDriver) -> None:
    """The figures as a table on stderr, and the first returns that did not complete."""
    table = Table(title="Boomerang demo")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key, str(value))
    failures = [
        t
        for t in driver.tracked
        if t.terminal != "ReturnCompleted" and not (t.abuse and t.terminal == "ReturnFailed")
    ]
    table.add_row("not completed", str(len(failures)))
    console.print(table)
    for tracked in failures[:5]:
        console.print(
            f"  {tracked.return_id or tracked.idempotency_key}: "
            f"terminal={tracked.terminal!r} errors={tracked.errors[-2:]}"
        )


def demo_passed(summary: dict[str, Any]) -> bool:
    """Every return completed (or, seeded abuse, refused), each refund paid once, with the
    right amount, method and liable party; settlement booked it all, balanced, once;
    reconciliation found each injected anomaly and nothing else; the services' /metrics
    tell the same KPIs as the demo saw."""
    settled = "ledger_balanced" not in summary or (
        summary["ledger_balanced"]
        and summary["ledger_caught_up"]
        and summary["entries_booked_twice"] == 0
        and summary["settlement_rejects"] == 0
        and summary["completions_waiting_for_order"] == 0
        and summary["recon_found"] == summary["recon_injected"]
        and summary["recon_false_breaks"] == 0
        and summary["seller_debited_returns"] == summary["seller_debits_expected"]
        and summary["carrier_claims"] == summary["carrier_claims_expected"]
    )
    return settled and (
        summary["completed"] + summary["rejected_as_abuse"] == summary["returns"]
        and summary["refunds_at_psp"] == summary["refunds_expected"]
        and summary["duplicates_at_psp"] == 0
        and summary.get("notification_duplicates", 0) == 0
        and summary.get("notifications_missing", 0) == 0
        and summary.get("cases_closed", 0) == summary.get("cases_opened", 0)
        and summary.get("disputes", 0) == sum(summary.get("disputes_decided", {}).values())
        and summary.get("dispute_refunds_at_psp", 0) == summary.get("dispute_refunds_expected", 0)
        and summary.get("dispute_duplicates_at_psp", 0) == 0
        and summary.get("dispute_wrong_amounts", 0) == 0
        and not summary.get("wrong_http_answers")
        and summary["wrong_amounts"] == summary["wrong_methods"] == 0
        and summary["wrong_liable"] == 0
        and not summary.get("kpis_disagree")
    )
