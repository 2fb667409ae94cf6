"""The cases' metrics (docs/metrics.md): cases opened, escalated and closed by type (and
market, level, outcome: declared sets), how long a case took to close, and, read off the
cases view at each scrape, the open and overdue cases per type."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.decisions.cases import case_file

CASES_OPENED = Counter(
    "boomerang_cases_opened",
    "Support cases opened from tickets, by type and market",
    ["type", "market"],
)
CASES_ESCALATED = Counter(
    "boomerang_cases_escalated",
    "Overdue cases escalated, by type and the level reached",
    ["type", "level"],
)
CASES_CLOSED = Counter(
    "boomerang_cases_closed", "Support cases closed, by type and outcome", ["type", "outcome"]
)
CASE_DURATION_SECONDS = Histogram(
    "boomerang_case_duration_seconds",
    "From a case opening to its closing, by type",
    ["type"],
    buckets=(60, 600, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400),
)


def count_change(name: str, before: dict[str, Any] | None, after: dict[str, Any]) -> None:
    """CasesPorts.on_change: a case before and after one event."""
    kind = after["type"]
    if before is None:
        CASES_OPENED.labels(kind, after["market"] or "unknown").inc()
    elif name == "CaseEscalated":
        CASES_ESCALATED.labels(kind, str(after["level"])).inc()
    elif name == "CaseClosed" and after["status"] == case_file.CLOSED:
        CASES_CLOSED.labels(kind, after["outcome"]).inc()
        CASE_DURATION_SECONDS.labels(kind).observe(
            max(0.0, (after["closed_at"] - after["opened_at"]) / 1000)
        )


class OpenCases(Collector):
    """boomerang_cases{type, state=open|overdue} read off the view when scraped."""

    def __init__(self, cases: Mapping[str, Any], clock_ms: Callable[[], int]) -> None:
        self.cases = cases
        self.clock_ms = clock_ms

    def collect(self) -> Iterator[Metric]:
        now = self.clock_ms()
        tally: Tally[tuple[str, str]] = Tally()
        for _, cases in list(self.cases.items()):
            for case in cases.values():
                if case["status"] == case_file.OPEN:
                    tally[
                        (case["type"], "overdue" if case_file.overdue(case, now) else "open")
                    ] += 1
        family = GaugeMetricFamily(
            "boomerang_cases",
            "Support cases not closed, by type and whether overdue",
            labels=["type", "state"],
        )
        for (kind, state), count in sorted(tally.items()):
            family.add_metric([kind, state], count)
        yield family


def register_open_cases(cases: Mapping[str, Any], clock_ms: Callable[[], int]) -> None:
    REGISTRY.register(OpenCases(cases, clock_ms))
