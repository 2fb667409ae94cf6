"""The risk service's metrics (docs/metrics.md): delivered orders (the return rate's
denominator), decisions by outcome, reviewers' verdicts and how long a held return waited
for one, and, read off the cases view at each scrape, the review queue."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

ORDERS_DELIVERED = Counter(
    "boomerang_orders_delivered",
    "Orders delivered to the buyer (the return rate's denominator), by market; counted once "
    "per order",
    ["market"],
)
RISK_DECISIONS = Counter(
    "boomerang_risk_decisions",
    "Risk checks decided by the live rule set, by market and outcome (approve, review, "
    "hold, decline)",
    ["market", "outcome"],
)
REVIEW_VERDICTS = Counter(
    "boomerang_risk_review_verdicts",
    "Reviewers' verdicts, by verdict (approve, deny) and whether the return was held",
    ["verdict", "held"],
)
REVIEW_SECONDS = Histogram(
    "boomerang_risk_review_duration_seconds",
    "From the rules' decision to a reviewer's verdict",
    ["held"],
    buckets=(10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400),
)


def order_delivered(market: str) -> None:
    ORDERS_DELIVERED.labels(market).inc()


def decided(market: str, outcome: str) -> None:
    RISK_DECISIONS.labels(market, outcome).inc()


def verdict_given(verdict: str, held: bool, waited_ms: int, return_id: str) -> None:
    label = "true" if held else "false"
    REVIEW_VERDICTS.labels(verdict, label).inc()
    REVIEW_SECONDS.labels(label).observe(max(0, waited_ms) / 1000, {"return_id": return_id})


class ReviewQueueCollector(Collector):
    """Cases by status (none, open, escalated, approved, denied), read off the cases view."""

    def __init__(self) -> None:
        self.cases: Callable[[], Mapping[str, Any] | None] = lambda: None
        self.status_of: Callable[[Mapping[str, Any]], str] = lambda case: "none"

    def collect(self) -> Iterator[Metric]:
        cases = self.cases()
        if cases is None:
            return
        by_status: dict[str, int] = {}
        for _, case in list(cases.items()):
            status = self.status_of(case)
            by_status[status] = by_status.get(status, 0) + 1
        family = GaugeMetricFamily(
            "boomerang_risk_cases",
            "Risk cases this instance holds, by status: none (decided by the rules), "
            "open and escalated (waiting for a reviewer; escalated past its deadline), "
            "approved, denied",
            labels=["status"],
        )
        for status, count in sorted(by_status.items()):
            family.add_metric([status], count)
        yield family


REVIEW_QUEUE = ReviewQueueCollector()
REGISTRY.register(REVIEW_QUEUE)
