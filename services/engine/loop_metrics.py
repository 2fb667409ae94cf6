"""What a service process tells Prometheus about its plumbing (docs/metrics.md): records
consumed, produced and dead-lettered per topic, handler latency per event type, consumer
lag per partition, records in flight, state sizes.

Counters and histograms are the process's own (prometheus-client's default registry: one
process, one service); the gauges are read off the running loop when /metrics is scraped
(`watch_loop`), so a scrape costs nothing on the hot path. Labels are bounded: topics,
event types and error classes are declared sets, partitions are numbers below the topic's
partition count; no return, buyer or order id is ever a label (a return id rides on an
exemplar instead).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# handler time: a millisecond of arithmetic to a partner call retried for seconds
HANDLER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

RECORDS_CONSUMED = Counter(
    "boomerang_records_consumed",
    "Input records taken off a topic, by what became of them: handled, dead_lettered, "
    "skipped_applied (a re-read record the state had taken), not_for_service (a type the "
    "subscription does not act on)",
    ["topic", "outcome"],
)
RECORDS_PRODUCED = Counter(
    "boomerang_records_produced",
    "Records handed to the producer, by topic (events, commands, changelogs, dead letters)",
    ["topic"],
)
RECORDS_DEAD_LETTERED = Counter(
    "boomerang_records_dead_lettered",
    "Input records parked on their dead-letter topic, by source topic and error class",
    ["topic", "error_class"],
)
HANDLER_SECONDS = Histogram(
    "boomerang_handler_duration_seconds",
    "Time one record spent in its handler (retries included), by topic and event type",
    ["topic", "event_type"],
    buckets=HANDLER_BUCKETS,
)


# the labelled children met so far (a label lookup takes the metric's lock; these are on the
# path of every record, and their label sets are bounded)
_consumed: dict[tuple[str, str], Any] = {}
_produced: dict[str, Any] = {}
_handler_time: dict[tuple[str, str], Any] = {}


def handled(topic: str, event_type: str, seconds: float, return_id: str | None) -> None:
    consumed = _consumed.get((topic, "handled"))
    if consumed is None:
        consumed = _consumed[(topic, "handled")] = RECORDS_CONSUMED.labels(topic, "handled")
    consumed.inc()
    timed = _handler_time.get((topic, event_type))
    if timed is None:
        timed = _handler_time[(topic, event_type)] = HANDLER_SECONDS.labels(topic, event_type)
    timed.observe(seconds, {"return_id": return_id} if return_id else None)


def passed_over(topic: str, outcome: str) -> None:
    RECORDS_CONSUMED.labels(topic, outcome).inc()


def dead_lettered(topic: str, error_class: str) -> None:
    RECORDS_CONSUMED.labels(topic, "dead_lettered").inc()
    RECORDS_DEAD_LETTERED.labels(topic, error_class).inc()


def produced(topic: str, count: int = 1) -> None:
    counter = _produced.get(topic)
    if counter is None:
        counter = _produced[topic] = RECORDS_PRODUCED.labels(topic)
    counter.inc(count)


@dataclass(frozen=True)
class LoopReadings:
    """What the running loop shows at a scrape; every field a plain reading."""

    ready: bool
    partitions_assigned: int
    in_flight: int
    buffered: int
    # (topic, partition) → records behind the partition's end (the done prefix's distance
    # to the high watermark last fetched)
    lag: dict[tuple[str, int], int]
    state_entries: dict[str, int]
    keys_tracked: int
    state_expired: int
    skipped_as_applied: int


class _LoopCollector(Collector):
    def __init__(self) -> None:
        self.read: Callable[[], LoopReadings | None] = lambda: None

    def collect(self) -> Iterator[Metric]:
        readings = self.read()
        if readings is None:
            return
        yield _gauge(
            "boomerang_loop_ready",
            "1 once partitions are assigned and their state is recovered",
            readings.ready,
        )
        yield _gauge(
            "boomerang_partitions_assigned",
            "Input partitions this instance consumes",
            readings.partitions_assigned,
        )
        yield _gauge(
            "boomerang_records_in_flight", "Keys with a record in a handler", readings.in_flight
        )
        yield _gauge(
            "boomerang_records_buffered",
            "Records fetched and not yet done (bounded by BOOMERANG_MAX_BUFFERED)",
            readings.buffered,
        )
        lag = GaugeMetricFamily(
            "boomerang_consumer_lag_records",
            "Records of an input partition not yet done: its high watermark minus the done prefix",
            labels=["topic", "partition"],
        )
        for (topic, partition), behind in sorted(readings.lag.items()):
            lag.add_metric([topic, str(partition)], behind)
        yield lag
        entries = GaugeMetricFamily(
            "boomerang_state_entries",
            "Entries held per state table (bounded by its retention: docs/scaling.md)",
            labels=["table"],
        )
        for table, count in sorted(readings.state_entries.items()):
            entries.add_metric([table], count)
        yield entries
        yield _gauge(
            "boomerang_state_keys_tracked",
            "Keys whose partition the state store knows",
            readings.keys_tracked,
        )
        yield CounterMetricFamily(
            "boomerang_state_expired",
            "State entries forgotten past their table's retention",
            value=readings.state_expired,
        )
        yield CounterMetricFamily(
            "boomerang_records_skipped_as_applied",
            "Re-read records whose effect the state held already (replays, restarts)",
            value=readings.skipped_as_applied,
        )


def _gauge(name: str, documentation: str, value: Any) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


_LOOP = _LoopCollector()
REGISTRY.register(_LOOP)


def watch_loop(read: Callable[[], LoopReadings | None]) -> None:
    """Show `read()` at every scrape (the process's one consume loop)."""
    _LOOP.read = read
