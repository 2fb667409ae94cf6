"""Pure arithmetic of the benchmark: percentiles, saturation, per-return costs, the summary
line. No I/O, so it is unit-tested (tests/unit/test_bench_figures.py)."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

# A level is sustained when the loop completes at least this share of the offered rate and
# leaves at most this share of the level's returns unfinished after the drain.
SUSTAINED_SHARE = 0.9
UNFINISHED_SHARE = 0.01
# The overload level offers this multiple of the max sustained level's load.
OVERLOAD_FACTOR = 2.0
# admission control is checked at this many times the max sustained offer: of the returns
# taken, ≥ 99 % finish within the generator's target; the rest are refused (429/503)
ADMISSION_FACTOR = 4.0

# The target record budget of one return (issue 18: ≤ 16 records, ≤ 12 KB, changelogs
# included), for the raw pipe when no measured level says otherwise: 11 events and commands
# in the order of the loop, then 5 state records (checkpointed, at most one per key each).
TARGET_RECORD_BUDGET: tuple[dict[str, Any], ...] = (
    {"topic": "boomerang.returns.events", "bytes": 1100, "state": False},
    {"topic": "boomerang.pickup.commands", "bytes": 500, "state": False},
    {"topic": "boomerang.pickup.events", "bytes": 450, "state": False},
    {"topic": "boomerang.pickup.events", "bytes": 450, "state": False},
    {"topic": "boomerang.inspection.events", "bytes": 750, "state": False},
    {"topic": "boomerang.intake.commands", "bytes": 600, "state": False},
    {"topic": "boomerang.intake.events", "bytes": 550, "state": False},
    {"topic": "boomerang.intake.stock-movements", "bytes": 500, "state": False},
    {"topic": "boomerang.refund.commands", "bytes": 900, "state": False},
    {"topic": "boomerang.refund.events", "bytes": 500, "state": False},
    {"topic": "boomerang.saga.events", "bytes": 450, "state": False},
    {"topic": "boomerang-coordinator-sagas-changelog", "bytes": 1300, "state": True},
    {"topic": "boomerang-coordinator-sagas-changelog", "bytes": 1300, "state": True},
    {"topic": "boomerang-coordinator-sagas-changelog", "bytes": 550, "state": True},
    {"topic": "boomerang-warehouse-intake-ledger-changelog", "bytes": 800, "state": True},
    {"topic": "boomerang-refund-refunds-changelog", "bytes": 1300, "state": True},
)


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(values_ms: Sequence[float]) -> dict[str, float | None]:
    return {
        "p50": percentile(values_ms, 50),
        "p95": percentile(values_ms, 95),
        "p99": percentile(values_ms, 99),
        "max": max(values_ms) if values_ms else None,
        "count": len(values_ms),
    }


def sustained(offered_per_s: float, completed_per_s: float, created: int, unfinished: int) -> bool:
    """Did the loop keep up with the offered load (no growing backlog)?"""
    if created == 0:
        return False
    return (
        completed_per_s >= SUSTAINED_SHARE * offered_per_s
        and unfinished <= UNFINISHED_SHARE * created
    )


def per_thousand(total: float, returns: int) -> float | None:
    return None if returns <= 0 else round(total * 1000 / returns, 3)


def records_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Records written per topic between two end-offset snapshots (topic → sum of ends)."""
    return {
        topic: after[topic] - before.get(topic, 0)
        for topic in after
        if after[topic] - before.get(topic, 0) > 0
    }


def saturation_level(levels: Sequence[Mapping[str, Any]]) -> float | None:
    """The first offered load the loop could not sustain (None: all were sustained)."""
    for level in levels:
        if not level["sustained"]:
            return level["offered_per_s"]
    return None


def best_sustained(levels: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The sustained level with the highest completed/s (None: none was sustained)."""
    kept_up = [level for level in levels if level["sustained"] and not level.get("overload")]
    return max(kept_up, key=lambda level: level["completed_per_s"], default=None)


def overload_rate(levels: Sequence[Mapping[str, Any]]) -> float | None:
    """The offered load of the overload level: twice the max sustained level's offer."""
    best = best_sustained(levels)
    return None if best is None else OVERLOAD_FACTOR * best["offered_per_s"]


def admission_rate(levels: Sequence[Mapping[str, Any]]) -> float | None:
    """The offered load of the admission level: ADMISSION_FACTOR × the max sustained offer."""
    best = best_sustained(levels)
    return None if best is None else ADMISSION_FACTOR * best["offered_per_s"]


def collapse_ratio(levels: Sequence[Mapping[str, Any]]) -> float | None:
    """Completed/s at twice the max sustained offer ÷ completed/s at the max sustained level:
    1.0 means throughput holds under overload (only the backlog grows), 0.5 that it halved.
    None when no level was sustained or the overload level was not run."""
    best = best_sustained(levels)
    if best is None or not best["completed_per_s"]:
        return None
    overload = level_at(levels, OVERLOAD_FACTOR * best["offered_per_s"])
    if overload is None:
        return None
    return round(overload["completed_per_s"] / best["completed_per_s"], 3)


def level_at(levels: Sequence[Mapping[str, Any]], offered_per_s: float) -> Mapping[str, Any] | None:
    return next((level for level in levels if level["offered_per_s"] == offered_per_s), None)


def final_line(levels: Sequence[Mapping[str, Any]], raw_returns_per_s: float | None) -> dict:
    """The run in one object: the best sustained throughput, p99 scan → refund at 100/s and
    at 200/s, how throughput holds at twice that load, and the per-return costs at the
    highest sustained level (CPU of the services and the broker; the partner doubles and the
    load generator apart)."""
    best = best_sustained(levels)
    at_100 = level_at(levels, 100)
    at_200 = level_at(levels, 200)
    max_rate = best["completed_per_s"] if best else 0.0
    service_rss = [
        mb
        for level in levels
        for name, mb in level["peak_rss_mb"].items()
        if name != "broker" and mb is not None
    ]
    return {
        "max_returns_per_s": round(max_rate, 1),
        "p99_scan_to_refund_ms_at_200": (
            at_200["scan_to_refund_ms"]["p99"] if at_200 and at_200["sustained"] else None
        ),
        "p99_scan_to_refund_ms_at_100": at_100["scan_to_refund_ms"]["p99"] if at_100 else None,
        "records_per_return": best["records_per_return"] if best else None,
        "kb_per_return": best.get("kb_per_return") if best else None,
        "ratio_vs_raw": (
            round(max_rate / raw_returns_per_s, 4) if raw_returns_per_s and best else None
        ),
        "collapse_ratio": collapse_ratio(levels),
        "cpu_ms_per_return": best["cpu_ms_per_return"] if best else None,
        "partner_doubles_cpu_ms_per_return": (
            best.get("partner_doubles_cpu_ms_per_return") if best else None
        ),
        "generator_cpu_ms_per_return": best.get("generator_cpu_ms_per_return") if best else None,
        "peak_rss_mb_max_service": round(max(service_rss), 1) if service_rss else None,
    }


def cpu_ms_per_return(
    cpu_s: Mapping[str, float], names: Collection[str], completed: int
) -> float | None:
    """CPU milliseconds of the processes in `names` per completed return."""
    if completed <= 0:
        return None
    return round(sum(s for name, s in cpu_s.items() if name in names) * 1000 / completed, 2)


def is_state_topic(topic: str) -> bool:
    """A changelog: a service's state, written as it changes (compacted)."""
    return topic.endswith("changelog")


def is_loop_topic(topic: str) -> bool:
    """A topic the loop writes (not Kafka's internal ones, not the raw pipe's)."""
    return not topic.startswith(("__", "boomerang.bench."))


def record_bytes(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
) -> int:
    """A record's size as written, before compression: key + value + header keys/values."""
    return (
        len(key or b"")
        + len(value or b"")
        + sum(len(name.encode()) + len(data or b"") for name, data in headers)
    )


def scaled_bytes(bytes_read: int, offsets_read: int, offsets_in_range: int) -> int:
    """The bytes of a partition's offset range, from a sample of `offsets_read` consecutive
    offsets of it (all of them: exact)."""
    if offsets_read <= 0:
        return 0
    if offsets_read >= offsets_in_range:
        return bytes_read
    return round(bytes_read * offsets_in_range / offsets_read)


def kb_per_return(bytes_by_topic: Mapping[str, int], completed: int) -> float | None:
    """KB (1,000 bytes) the loop wrote per completed return: every topic it writes,
    changelogs included, Kafka's internal topics (offset commits) left out."""
    if completed <= 0:
        return None
    written = sum(n for topic, n in bytes_by_topic.items() if is_loop_topic(topic))
    return round(written / completed / 1000, 2)


def record_budget(
    records_by_topic: Mapping[str, int], bytes_by_topic: Mapping[str, int], completed: int
) -> list[dict[str, Any]]:
    """The records one return costs, from a measured level: per topic the records per
    completed return, rounded so the total rounds like the level's records_per_return (the
    largest remainders first), sharing the topic's bytes per return (so the budget's KB is
    the level's, but for topics rounded to no record). Events first, then state, each in
    the loop's order (the target table's), other topics after them by name."""
    shares = {
        topic: records / completed
        for topic, records in records_by_topic.items()
        if is_loop_topic(topic) and records > 0 and completed > 0
    }
    counts = {topic: math.floor(share) for topic, share in shares.items()}
    missing = round(sum(shares.values())) - sum(counts.values())
    by_remainder = sorted(shares, key=lambda topic: (counts[topic] - shares[topic], topic))
    for topic in by_remainder[:missing]:
        counts[topic] += 1
    loop_order = list(dict.fromkeys(record["topic"] for record in TARGET_RECORD_BUDGET))
    ordered = sorted(
        counts,
        key=lambda topic: (
            is_state_topic(topic),
            loop_order.index(topic) if topic in loop_order else len(loop_order),
            topic,
        ),
    )
    return [
        {
            "topic": topic,
            "bytes": max(1, round(bytes_by_topic.get(topic, 0) / completed / counts[topic])),
            "state": is_state_topic(topic),
        }
        for topic in ordered
        for _ in range(counts[topic])
    ]


def budget_totals(budget: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "records": len(budget),
        "state_records": sum(1 for record in budget if record["state"]),
        "kb": round(sum(record["bytes"] for record in budget) / 1000, 2),
    }


def pipe_plan(budget: list[dict[str, Any]], processes: int) -> dict[str, Any]:
    """The raw pipe's work for one return of `budget`: the event hops' sizes (hop 0
    injected, hop i written on reading hop i - 1), the state records written at each hop
    (round robin over the hops the stages write, labelled by the loop's topic) and the
    hops of each of at most `processes` stage processes."""
    events = [record["bytes"] for record in budget if not record["state"]]
    states = [record for record in budget if record["state"]]
    if len(events) < 2:
        raise ValueError(f"a pipe needs 2 events or more, the budget has {len(events)}")
    staged_hops = list(range(1, len(events)))
    state_at: dict[int, list[dict[str, Any]]] = {hop: [] for hop in staged_hops}
    for index, record in enumerate(states):
        label = record["topic"].replace(".", "-")
        state_at[staged_hops[index % len(staged_hops)]].append(
            {"label": label, "bytes": record["bytes"]}
        )
    processes = max(1, min(processes, len(staged_hops)))
    return {
        "events": events,
        "state_at": {str(hop): records for hop, records in state_at.items()},
        "stages": [staged_hops[k::processes] for k in range(processes)],
        "state_labels": sorted({record["label"] for r in state_at.values() for record in r}),
    }
