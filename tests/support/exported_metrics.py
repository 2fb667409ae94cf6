"""Every metric a Boomerang process can export, read from prometheus-client's registry with
each scrape-time collector given readings (so its families show): the catalogue the metric
naming test and the Grafana dashboard test check against."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

# every module that defines metrics (a new one is found by test_metric_names: it greps)
METRIC_MODULES = (
    "services.engine.loop_metrics",
    "services.engine.web",
    "services.eventing.partner_http",
    "services.coordinator.saga_metrics",
    "services.refund.refund_metrics",
    "services.risk.risk_metrics",
    "services.settlement.settlement_metrics",
    "services.notifications.notification_metrics",
    "services.cases.case_metrics",
)


@dataclass(frozen=True)
class ExportedFamily:
    name: str  # the family's name (a counter's without _total)
    kind: str  # counter, gauge, histogram
    labels: tuple[str, ...]
    samples: frozenset[str]  # the series names a query can use


def _load() -> None:
    for name in METRIC_MODULES:
        importlib.import_module(name)
    from services.coordinator import saga_metrics
    from services.engine import loop_metrics
    from services.risk import risk_metrics
    from services.settlement import settlement_metrics

    loop_metrics.watch_loop(
        lambda: loop_metrics.LoopReadings(
            ready=True,
            partitions_assigned=1,
            in_flight=0,
            buffered=0,
            lag={("topic", 0): 1},
            state_entries={"table": 1},
            keys_tracked=1,
            state_expired=0,
            skipped_as_applied=0,
        )
    )
    if saga_metrics.SAGA_TABLE.sagas() is None:
        saga_metrics.SAGA_TABLE.sagas = lambda: {}
    if risk_metrics.REVIEW_QUEUE.cases() is None:
        risk_metrics.REVIEW_QUEUE.cases = lambda: {}
    settlement_metrics.RECON.figures = settlement_metrics.ReconFigures(
        match_rate=1.0, breaks_by_category={"amount_mismatch": 1}
    )


def _series(name: str, kind: str) -> frozenset[str]:
    if kind == "counter":
        return frozenset({f"{name}_total", f"{name}_created"})
    if kind == "histogram":
        return frozenset({f"{name}_bucket", f"{name}_count", f"{name}_sum", f"{name}_created"})
    return frozenset({name})


def exported_families() -> Iterator[ExportedFamily]:
    """Boomerang's families (the process and platform collectors' left out)."""
    _load()
    labels: dict[str, tuple[str, ...]] = {}
    for module in METRIC_MODULES:
        for value in vars(importlib.import_module(module)).values():
            if isinstance(value, MetricWrapperBase):
                labels[value._name] = tuple(value._labelnames)
    for family in REGISTRY.collect():
        if not family.name.startswith("boomerang_"):
            continue
        sampled = {key for sample in family.samples for key in sample.labels if key != "le"}
        found = labels.get(family.name, tuple(sorted(sampled)))
        yield ExportedFamily(family.name, family.type, found, _series(family.name, family.type))


def exported_series() -> frozenset[str]:
    return frozenset(name for family in exported_families() for name in family.samples)
