"""Hypothesis strategies that generate records for any (wire) Avro schema."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "string": st.text(max_size=20),
    "bytes": st.binary(max_size=20),
}


def records(schema: Any) -> st.SearchStrategy[Any]:
    named: dict[str, Any] = {}

    def build(node: Any) -> st.SearchStrategy[Any]:
        if isinstance(node, str):
            if node in PRIMITIVES:
                return PRIMITIVES[node]
            return st.deferred(lambda: build(named[node]))
        if isinstance(node, list):
            return st.one_of(*(build(branch) for branch in node))
        kind = node["type"]
        if kind in ("record", "enum", "fixed"):
            named[node["name"]] = node
        if kind == "record":
            return st.fixed_dictionaries({f["name"]: build(f["type"]) for f in node["fields"]})
        if kind == "enum":
            return st.sampled_from(node["symbols"])
        if kind == "array":
            return st.lists(build(node["items"]), max_size=4)
        if kind == "map":
            return st.dictionaries(st.text(max_size=8), build(node["values"]), max_size=4)
        if kind == "fixed":
            return st.binary(min_size=node["size"], max_size=node["size"])
        return build(kind)

    return build(schema)


def sample_record(schema: Any, seed: int = 7) -> Any:
    """One deterministic record for a schema (fastavro's generator, seeded)."""
    import random

    from fastavro.utils import generate_one

    state = random.getstate()
    random.seed(seed)
    try:
        return generate_one(schema)
    finally:
        random.setstate(state)
