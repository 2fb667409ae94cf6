"""Pure arithmetic of the benchmark: percentiles, saturation, per-return costs, the summary
line. No I/O, so it is unit-tested (tests/unit/test_bench_figures.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# A level is sustained when the loop completes at least this share of the offered rate and
# leaves at most this share of the level's returns unfinished after the drain.
SUSTAINED_SHARE = 0.9
UNFINISHED_SHARE = 0.01


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


def final_line(levels: Sequence[Mapping[str, Any]], raw_returns_per_s: float | None) -> dict:
    """The run in one object: the best sustained throughput, p99 scan → refund at 200/s,
    and the per-return costs at the highest sustained level."""
    kept_up = [level for level in levels if level["sustained"]]
    best = max(kept_up, key=lambda level: level["completed_per_s"], default=None)
    at_200 = next((level for level in levels if level["offered_per_s"] == 200), None)
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
        "records_per_return": best["records_per_return"] if best else None,
        "ratio_vs_raw": (
            round(max_rate / raw_returns_per_s, 4) if raw_returns_per_s and best else None
        ),
        "cpu_ms_per_return": best["cpu_ms_per_return"] if best else None,
        "peak_rss_mb_max_service": round(max(service_rss), 1) if service_rss else None,
    }


def typical_path(paths: Sequence[Sequence[Mapping[str, Any]]]) -> list[Mapping[str, Any]]:
    """Of several returns' record sequences, one with the most common sequence of record
    names (ties: the shorter); [] when there are none."""
    if not paths:
        return []
    counts: dict[tuple[str, ...], int] = {}
    for path in paths:
        names = tuple(record["name"] for record in path)
        counts[names] = counts.get(names, 0) + 1
    best = max(counts, key=lambda names: (counts[names], -len(names)))
    return list(next(path for path in paths if tuple(r["name"] for r in path) == best))
