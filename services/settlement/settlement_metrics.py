"""Settlement's metrics (docs/metrics.md): records read and what became of them, ledger
entries booked, and the last reconciliation's breaks by category and match rate (read from
the ledger database every FIGURES_EVERY_S by the finance schedule, shown at each scrape)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

FIGURES_EVERY_S = 15.0

ENTRIES_BOOKED = Counter(
    "boomerang_settlement_entries_booked",
    "Journal entries booked into the ledger (each once: a duplicate is counted apart)",
)
ENTRIES_DUPLICATE = Counter(
    "boomerang_settlement_entries_duplicate",
    "Journal entries met again and not booked (replays, redeliveries)",
)
RECORDS_REJECTED = Counter(
    "boomerang_settlement_records_rejected",
    "Records settlement could not book, kept aside with the reason (settlement_rejects)",
    ["topic"],
)


@dataclass
class ReconFigures:
    """The last reconciliation run, as read from the ledger database."""

    run_date: str = ""
    match_rate: float | None = None
    breaks_by_category: dict[str, int] = field(default_factory=dict)
    open_tickets: int = 0


class ReconCollector(Collector):
    def __init__(self) -> None:
        self.figures = ReconFigures()

    def collect(self) -> Iterator[Metric]:
        figures = self.figures
        breaks = GaugeMetricFamily(
            "boomerang_settlement_breaks",
            "Breaks the last reconciliation run found, by category (missing_at_provider, "
            "amount_mismatch, ...)",
            labels=["category"],
        )
        for category, count in sorted(figures.breaks_by_category.items()):
            breaks.add_metric([category], count)
        yield breaks
        if figures.match_rate is not None:
            yield GaugeMetricFamily(
                "boomerang_settlement_match_ratio",
                "Share of the ledger's refunds the providers' reports matched, last run (0-1)",
                value=figures.match_rate,
            )
        if figures.run_date:
            day = datetime.date.fromisoformat(figures.run_date)
            midnight = datetime.datetime.combine(day, datetime.time(), datetime.UTC)
            yield GaugeMetricFamily(
                "boomerang_settlement_recon_last_run_date_seconds",
                "The day the last reconciliation ran for (its midnight UTC, Unix seconds)",
                value=midnight.timestamp(),
            )
        yield GaugeMetricFamily(
            "boomerang_settlement_recon_tickets",
            "Reconciliation tickets opened for breaks that outlived their grace days",
            value=figures.open_tickets,
        )


RECON = ReconCollector()
REGISTRY.register(RECON)
