"""The coordinator's after-sales metrics (docs/metrics.md): what each saga step added
(decisions/after_sales/saga_figures.py) into counters and histograms, and, read off the
saga table when /metrics is scraped, the sagas per status and the inspection backlog.

Labels are markets, categories, refund methods and statuses: declared sets. The return id
of a money time rides on its exemplar."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.coordinator.handlers import LiveSaga
from services.decisions.after_sales.saga_figures import MONEY_TIME_BUCKETS_S, SagaFigures
from services.decisions.saga.state import Status
from services.engine.stored_value import Settled

RETURNS_STARTED = Counter(
    "boomerang_returns_started",
    "Returns whose saga started (the return rate's numerator), by market and category",
    ["market", "category"],
)
RETURNS_FINISHED = Counter(
    "boomerang_returns_finished",
    "Returns whose saga ended, by market, category and terminal status (COMPLETED, "
    "REJECTED, CANCELLED, COMPENSATED, NEEDS_ATTENTION)",
    ["market", "category", "outcome"],
)
PICKUPS_RESOLVED = Counter(
    "boomerang_pickups_resolved",
    "Pickups that ended: collected at the first attempt, after a failed attempt, or not "
    "collected (attempts ran out)",
    ["market", "outcome"],
)
COMPENSATIONS_STARTED = Counter(
    "boomerang_compensations_started",
    "Sagas that began compensating (undoing their steps in reverse)",
    ["market"],
)
DISPUTES_OPENED = Counter(
    "boomerang_disputes_opened",
    "Decided returns their buyer disputed (re-inspection asked, a case opened), by market",
    ["market"],
)
DISPUTES_DECIDED = Counter(
    "boomerang_disputes_decided",
    "Disputes decided, by market, decision (FULL_REFUND, PARTIAL_REFUND, GOODWILL, UPHELD) "
    "and who decided (reinspection, agent)",
    ["market", "decision", "decided_by"],
)
REQUEST_TO_MONEY = Histogram(
    "boomerang_refund_request_to_money_seconds",
    "From the buyer's return request to the provider paying the refund, by market and method",
    ["market", "method"],
    buckets=MONEY_TIME_BUCKETS_S,
)
PICKUP_TO_MONEY = Histogram(
    "boomerang_refund_pickup_to_money_seconds",
    "From the carrier collecting the parcel to the provider paying the refund",
    ["market", "method"],
    buckets=MONEY_TIME_BUCKETS_S,
)


def record_figures(figures: SagaFigures, return_id: str) -> None:
    if figures.empty:
        return
    market, category = figures.market, figures.category
    if figures.started:
        RETURNS_STARTED.labels(market, category).inc()
    if figures.pickup:
        PICKUPS_RESOLVED.labels(market, figures.pickup).inc()
    if figures.compensation_started:
        COMPENSATIONS_STARTED.labels(market).inc()
    if figures.finished:
        RETURNS_FINISHED.labels(market, category, figures.finished).inc()
    if figures.dispute_opened:
        DISPUTES_OPENED.labels(market).inc()
    if figures.dispute_decided:
        DISPUTES_DECIDED.labels(market, *figures.dispute_decided).inc()
    if figures.request_to_money_s is not None and figures.refund_method:
        exemplar = {"return_id": return_id}
        REQUEST_TO_MONEY.labels(market, figures.refund_method).observe(
            figures.request_to_money_s, exemplar
        )
        if figures.pickup_to_money_s is not None:
            PICKUP_TO_MONEY.labels(market, figures.refund_method).observe(
                figures.pickup_to_money_s, exemplar
            )


def saga_status_and_collection(value: Any) -> tuple[str, int | None]:
    """A table value's status and, while it waits for inspection, when it was collected."""
    if isinstance(value, Settled):
        return value.label, None
    if isinstance(value, LiveSaga):
        state = value.state
        return str(state.status), state.pickup.get("collected_at")
    status = str(value.get("status") or "")
    return status, (value.get("pickup") or {}).get("collected_at")


class SagaTableCollector(Collector):
    """Sagas per status and the inspection backlog, read off the table at each scrape."""

    def __init__(self) -> None:
        self.sagas: Callable[[], Mapping[str, Any] | None] = lambda: None

    def collect(self) -> Iterator[Metric]:
        sagas = self.sagas()
        if sagas is None:
            return
        by_status: dict[str, int] = {}
        waiting_since: list[int] = []
        for _, value in list(sagas.items()):
            status, collected_at = saga_status_and_collection(value)
            by_status[status] = by_status.get(status, 0) + 1
            if status == Status.AWAITING_INSPECTION and collected_at:
                waiting_since.append(int(collected_at))
        family = GaugeMetricFamily(
            "boomerang_sagas",
            "Sagas this instance holds, by status (finished ones until they are archived)",
            labels=["status"],
        )
        for status, count in sorted(by_status.items()):
            family.add_metric([status], count)
        yield family
        yield GaugeMetricFamily(
            "boomerang_inspection_backlog_returns",
            "Returns collected by the carrier and not inspected yet",
            value=len(waiting_since),
        )
        oldest = (time.time() * 1000 - min(waiting_since)) / 1000 if waiting_since else 0
        yield GaugeMetricFamily(
            "boomerang_inspection_backlog_oldest_age_seconds",
            "Age of the oldest collected, uninspected return (0 when there is none)",
            value=max(0.0, oldest),
        )


SAGA_TABLE = SagaTableCollector()
REGISTRY.register(SAGA_TABLE)
