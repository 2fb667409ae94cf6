"""The after-sales KPIs read back from metric samples (pure, no I/O): the figures the
dashboard shows and the demo checks, from the samples every process's /metrics gave.

A KPI is summed over processes (two instances of a service each count what they handled);
an age or a ratio read off one process is taken at its largest. Quantiles are estimated
from histogram buckets as Prometheus's `histogram_quantile` does (linear within the bucket
holding the rank), and the bucket is given with them: an estimate is only as good as it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MetricSample:
    name: str  # as exposed: boomerang_returns_started_total, ..._bucket, ..._count
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Quantile:
    value: float | None  # None when nothing was observed
    lower: float  # the bucket holding the rank: (lower, upper]
    upper: float


def total(samples: Iterable[MetricSample], name: str, **match: str) -> float:
    """The sum of `name` over every process and label set matching `match`."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in match.items())
    )


def largest(samples: Iterable[MetricSample], name: str) -> float:
    return max((s.value for s in samples if s.name == name), default=0.0)


def by_label(
    samples: Iterable[MetricSample], name: str, label: str, **match: str
) -> dict[str, float]:
    """`name` summed per value of `label` (over processes and the other labels)."""
    sums: dict[str, float] = {}
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in match.items()):
            key = s.labels.get(label, "")
            sums[key] = sums.get(key, 0.0) + s.value
    return dict(sorted(sums.items()))


def cumulative_buckets(
    samples: Iterable[MetricSample], histogram: str
) -> list[tuple[float, float]]:
    """(upper bound, observations at or below it), summed over processes and labels."""
    counts: dict[float, float] = {}
    for s in samples:
        if s.name == f"{histogram}_bucket":
            bound = float(s.labels["le"])
            counts[bound] = counts.get(bound, 0.0) + s.value
    return sorted(counts.items())


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> Quantile:
    """Prometheus's histogram_quantile over cumulative `buckets` (the +Inf one last)."""
    if not buckets or buckets[-1][1] <= 0:
        return Quantile(None, 0.0, 0.0)
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank and count > below:
            if math.isinf(upper):  # past the last finite bound: its bound is the estimate
                return Quantile(lower, lower, upper)
            return Quantile(
                lower + (upper - lower) * (rank - below) / (count - below), lower, upper
            )
        lower, below = upper, count
    return Quantile(lower, lower, lower)


def ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def _timing(samples: Sequence[MetricSample], histogram: str) -> dict[str, Any]:
    buckets = cumulative_buckets(samples, histogram)
    shown: dict[str, Any] = {"count": int(total(samples, f"{histogram}_count"))}
    for name, q in (("p50", 0.5), ("p95", 0.95)):
        found = quantile(q, buckets)
        shown[f"{name}_s"] = None if found.value is None else round(found.value, 3)
        shown[f"{name}_bucket_s"] = None if found.value is None else [found.lower, found.upper]
    shown["buckets"] = [
        {"le": "+Inf" if math.isinf(bound) else bound, "count": int(count)}
        for bound, count in buckets
    ]
    return shown


def kpi_figures(samples: Sequence[MetricSample]) -> dict[str, Any]:
    """Every KPI the dashboard shows, as JSON."""
    started = total(samples, "boomerang_returns_started_total")
    delivered = total(samples, "boomerang_orders_delivered_total")
    started_by_market = by_label(samples, "boomerang_returns_started_total", "market")
    delivered_by_market = by_label(samples, "boomerang_orders_delivered_total", "market")
    pickups = by_label(samples, "boomerang_pickups_resolved_total", "outcome")
    finished = by_label(samples, "boomerang_returns_finished_total", "outcome")
    attempts: dict[str, dict[str, Any]] = {}
    for s in samples:
        if s.name == "boomerang_refund_attempts_total":
            key = f"{s.labels.get('method')}/{s.labels.get('provider')}"
            entry = attempts.setdefault(key, {"attempts": 0, "failed": 0})
            entry["attempts"] += int(s.value)
            if s.labels.get("outcome") != "issued":
                entry["failed"] += int(s.value)
    for entry in attempts.values():
        entry["failure_rate"] = ratio(entry["failed"], entry["attempts"])
    decisions = by_label(samples, "boomerang_risk_decisions_total", "outcome")
    cases = by_label(samples, "boomerang_risk_cases", "status")
    return {
        "returns_started": int(started),
        "orders_delivered": int(delivered),
        "return_rate": ratio(started, delivered),
        "return_rate_by_market": {
            market: ratio(started_by_market.get(market, 0.0), count)
            for market, count in delivered_by_market.items()
        },
        "refund_request_to_money": _timing(samples, "boomerang_refund_request_to_money_seconds"),
        "refund_pickup_to_money": _timing(samples, "boomerang_refund_pickup_to_money_seconds"),
        "pickups_resolved": {k: int(v) for k, v in pickups.items()},
        "first_attempt_pickup_success": ratio(
            pickups.get("first_attempt", 0.0), sum(pickups.values())
        ),
        "returns_finished": {k: int(v) for k, v in finished.items()},
        "compensation_rate": ratio(
            total(samples, "boomerang_compensations_started_total"), sum(finished.values())
        ),
        "refund_attempts": dict(sorted(attempts.items())),
        "inspection_backlog": int(total(samples, "boomerang_inspection_backlog_returns")),
        "inspection_oldest_age_s": round(
            largest(samples, "boomerang_inspection_backlog_oldest_age_seconds"), 1
        ),
        "risk_decisions": {k: int(v) for k, v in decisions.items()},
        "risk_holds": int(decisions.get("hold", 0.0)),
        "review_queue": int(cases.get("open", 0.0) + cases.get("escalated", 0.0)),
        "review_overdue": int(cases.get("escalated", 0.0)),
        "review_time": _timing(samples, "boomerang_risk_review_duration_seconds"),
        "cases_open": int(total(samples, "boomerang_cases")),
        "cases_overdue": int(total(samples, "boomerang_cases", state="overdue")),
        "cases_escalated": int(total(samples, "boomerang_cases_escalated_total")),
        "notifications_sent": int(total(samples, "boomerang_notifications_sent_total")),
        "notification_send_failures": int(
            total(samples, "boomerang_notification_send_failures_total")
        ),
        "notifications_given_up": int(total(samples, "boomerang_notifications_given_up_total")),
        "disputes_opened": int(total(samples, "boomerang_disputes_opened_total")),
        "disputes_decided": {
            k: int(v)
            for k, v in by_label(samples, "boomerang_disputes_decided_total", "decision").items()
        },
        "settlement_breaks": {
            k: int(v)
            for k, v in by_label(samples, "boomerang_settlement_breaks", "category").items()
        },
        "settlement_match_ratio": (
            round(largest(samples, "boomerang_settlement_match_ratio"), 4)
            if any(s.name == "boomerang_settlement_match_ratio" for s in samples)
            else None
        ),
        "dead_lettered": {
            k: int(v)
            for k, v in by_label(samples, "boomerang_records_dead_lettered_total", "topic").items()
        },
        # per service (each reads its topics in a consumer group of its own)
        "consumer_lag": {
            k: int(v)
            for k, v in by_label(samples, "boomerang_consumer_lag_records", "service").items()
        },
    }
