"""The latency percentiles vs offered load plot (PNG), saturation point marked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter


def plot_levels(
    levels: Sequence[Mapping[str, Any]], saturation: float | None, title: str, path: Path
) -> Path:
    figure, (scan_axis, request_axis) = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    offered = [level["offered_per_s"] for level in levels]
    for axis, key, label in (
        (scan_axis, "scan_to_refund_ms", "scan → refund issued"),
        (request_axis, "request_to_refund_ms", "request → refund issued"),
    ):
        for percentile, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-"), ("max", "x:")):
            points = [
                (load, level[key][percentile])
                for load, level in zip(offered, levels, strict=True)
                if level[key][percentile] is not None
            ]
            if points:
                axis.plot(*zip(*points, strict=True), style, label=percentile)
        if saturation is not None:
            axis.axvline(
                saturation, color="red", linestyle="--", label=f"saturated at {saturation:g}/s"
            )
        axis.axhline(500, color="grey", linestyle=":", label="500 ms goal")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xticks(offered, [f"{load:g}" for load in offered])
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel("offered load (returns/s)")
        axis.set_title(label)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    scan_axis.set_ylabel("latency (ms)")
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
