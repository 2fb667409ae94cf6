"""The demo's KPIs twice: as the demo itself saw its returns (its own clocks and events),
and as every service's /metrics tells them (read back as the dashboard does). They must
agree: counts exactly, quantiles within one histogram bucket of each other."""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from typing import Any

import aiohttp

from services.decisions.after_sales.kpi_readings import kpi_figures
from services.decisions.after_sales.saga_figures import MONEY_TIME_BUCKETS_S
from services.ops.metric_scrape import scrape
from services.tools.local_stack.drawn_returns import TrackedReturn
from services.tools.local_stack.loop_driver import LoopDriver
from services.tools.local_stack.stack import LocalStack

# the share of pickups the carrier double fails once before collecting (the demo's own
# figure of first-attempt success comes from the PickupAttemptFailed events it sees)
DEMO_PICKUP_FAILURE_RATE = 0.15
AGREEMENT_WAIT_S = 30.0


def quantile_of(values: list[float], q: float) -> float | None:
    """The q-quantile of `values` (nearest rank)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def bucket_index(seconds: float) -> int:
    """Which money-time bucket holds `seconds` (0 for the first, (−∞, 0.5])."""
    return bisect.bisect_left(MONEY_TIME_BUCKETS_S, seconds)


def demo_kpis(driver: LoopDriver, summary: dict[str, Any]) -> dict[str, Any]:
    """The KPIs from what the demo did and saw (`summary`: its figures so far)."""
    risk_outcomes = summary["risk_outcomes"]
    started = [t for t in driver.tracked if t.return_id]
    paid = [t for t in started if _paid(t) and t.ended_at and t.requested_at]
    money_s = [t.ended_at - t.requested_at for t in paid]
    collected = [t for t in started if t.collected]
    first = [t for t in collected if t.failed_pickup_attempts == 0]
    return {
        "returns_started": len(started),
        "orders_delivered": driver.orders_delivered,
        "return_rate": round(len(started) / driver.orders_delivered, 4)
        if driver.orders_delivered
        else None,
        "refunds_paid": len(paid),
        "refund_p50_s": _rounded(quantile_of(money_s, 0.5)),
        "refund_p95_s": _rounded(quantile_of(money_s, 0.95)),
        "pickups_resolved": len(collected),
        "first_attempt_pickup_success": round(len(first) / len(collected), 4)
        if collected
        else None,
        "completed": sum(t.terminal == "ReturnCompleted" for t in started),
        "risk_holds": int(risk_outcomes.get("hold", 0)),
        "risk_declines": int(risk_outcomes.get("decline", 0)),
        "settlement_breaks": summary.get("recon_breaks_last_run"),
        "settlement_match_ratio": summary.get("recon_match_rate"),
        "disputes_opened": sum(t.dispute in ("open", "decided") for t in started),
    }


def _paid(tracked: TrackedReturn) -> bool:
    return (
        tracked.terminal == "ReturnCompleted"
        and tracked.expected_minor > 0
        and tracked.expected_method != "EXCHANGE"
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def metric_kpis(figures: dict[str, Any]) -> dict[str, Any]:
    """The same KPIs from the services' metrics (kpi_readings' figures)."""
    money = figures["refund_request_to_money"]
    pickups = figures["pickups_resolved"]
    return {
        "returns_started": figures["returns_started"],
        "orders_delivered": figures["orders_delivered"],
        "return_rate": figures["return_rate"],
        "refunds_paid": money["count"],
        "refund_p50_s": money["p50_s"],
        "refund_p95_s": money["p95_s"],
        "refund_p50_bucket_s": money["p50_bucket_s"],
        "refund_p95_bucket_s": money["p95_bucket_s"],
        "pickups_resolved": sum(pickups.values()),
        "first_attempt_pickup_success": figures["first_attempt_pickup_success"],
        "completed": figures["returns_finished"].get("COMPLETED", 0),
        "risk_holds": figures["risk_holds"],
        "risk_declines": figures["risk_decisions"].get("decline", 0),
        "settlement_breaks": figures["settlement_breaks"],
        "settlement_match_ratio": figures["settlement_match_ratio"],
        "disputes_opened": figures["disputes_opened"],
    }


COUNTS = (
    "returns_started",
    "orders_delivered",
    "refunds_paid",
    "pickups_resolved",
    "completed",
    "risk_holds",
    "risk_declines",
    "disputes_opened",
)
# ratios of the counts, exact too; and the last reconciliation as settlement reads it back
RATIOS = (
    "return_rate",
    "first_attempt_pickup_success",
    "settlement_breaks",
    "settlement_match_ratio",
)
QUANTILES = ("refund_p50_s", "refund_p95_s")


def disagreements(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """The figures on which the demo and the metrics differ (none, when all is well)."""
    wrong = [
        f"{name}: demo {ours[name]} metrics {theirs[name]}"
        for name in (*COUNTS, *RATIOS)
        if ours[name] != theirs[name]
    ]
    for name in QUANTILES:
        mine, measured = ours[name], theirs[name]
        if mine is None or measured is None:
            if mine != measured:
                wrong.append(f"{name}: demo {mine} metrics {measured}")
            continue
        if abs(bucket_index(mine) - bucket_index(measured)) > 1:
            wrong.append(f"{name}: demo {mine} s metrics {measured} s (over one bucket apart)")
    return wrong


async def scraped_kpis(stack: LocalStack) -> dict[str, Any]:
    """Every service process's /metrics (settlement's too), read back as KPIs."""
    async with aiohttp.ClientSession() as session:
        found = await scrape(session, stack.metrics_sources)
    down = sorted(name for name, state in found.sources.items() if state != "ok")
    if down:
        raise RuntimeError(f"/metrics not read from {down}: {found.sources}")
    return kpi_figures(found.samples)


def kpi_report(stack: LocalStack, driver: LoopDriver, summary: dict[str, Any]) -> dict:
    """The demo's JSON fields: both sets of KPIs and where they disagree. Read again for up
    to AGREEMENT_WAIT_S while they differ: settlement reads its last reconciliation back
    every 15 s, and the last records of the run may still be in a handler."""
    ours = demo_kpis(driver, summary)
    deadline = time.monotonic() + AGREEMENT_WAIT_S
    while True:
        theirs = metric_kpis(asyncio.run(scraped_kpis(stack)))
        wrong = disagreements(ours, theirs)
        if not wrong or time.monotonic() > deadline:
            return {"kpis": ours, "kpis_from_metrics": theirs, "kpis_disagree": wrong}
        time.sleep(2.0)
