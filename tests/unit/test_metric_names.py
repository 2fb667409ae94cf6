"""Every metric follows Prometheus's naming (a `boomerang_` prefix, base units, `_total`
counters) and none carries an unbounded label (a return, buyer, order or seller id)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.exported_metrics import METRIC_MODULES, exported_families

ROOT = Path(__file__).resolve().parents[2]
UNBOUNDED_LABELS = {
    "return_id",
    "buyer_id",
    "order_ref",
    "seller_id",
    "event_id",
    "sku",
    "address",
    "case_id",
    "booking_id",
}


def test_every_module_defining_metrics_is_in_the_catalogue():
    defining = set()
    for path in (ROOT / "services").rglob("*.py"):
        text = path.read_text()
        if re.search(r"\b(Counter|Histogram|Gauge|Summary)\(\s*\"boomerang_", text) or (
            "MetricFamily(" in text and '"boomerang_' in text
        ):
            defining.add(".".join(path.relative_to(ROOT).with_suffix("").parts))
    assert defining == set(METRIC_MODULES)


def test_names_are_prefixed_in_base_units_and_counters_count():
    families = list(exported_families())
    assert len(families) >= 30
    for family in families:
        assert re.fullmatch(r"boomerang_[a-z][a-z0-9_]*", family.name), family.name
        assert not family.name.endswith("_total"), f"{family.name}: the client adds _total"
        if "duration" in family.name or family.name.endswith(("_time", "_age")):
            assert family.name.endswith("_seconds"), family.name
        assert not re.search(r"_(ms|milliseconds|minutes|hours|days)\b", family.name), family.name
        if family.kind == "histogram":
            assert family.name.endswith("_seconds"), f"{family.name}: histograms here time"


def test_no_label_is_an_id():
    for family in exported_families():
        assert not set(family.labels) & UNBOUNDED_LABELS, (family.name, family.labels)
