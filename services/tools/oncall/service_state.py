"""The services' dedupe state, read from their tables' changelogs and the topics their
views fold (a thin aiokafka adapter).

A service table is the latest value per key of its compacted changelog
"boomerang-<service>-<table>-changelog"; a view (a table without a changelog) is the fold of
the topics it is rebuilt from, with the service's own fold. Reading them to their end
rebuilds the table without asking the service, so it works while the service is stopped
(as a rewind needs).
"""

from __future__ import annotations

import json
from collections.abc import Callable, MutableMapping
from typing import Any

from services.engine.stored_value import value_of
from services.eventing.topics import (
    ALL_TOPICS,
    INSPECTION_EVENTS,
    INTAKE_EVENTS,
    PICKUP_EVENTS,
    REFUND_EVENTS,
    RETURNS_EVENTS,
    RISK_EVENTS,
    RISK_SELLERS,
)
from services.tools.oncall.topic_reader import read_topic

Fold = Callable[[MutableMapping[str, Any], str, dict[str, Any]], None]


def views() -> dict[tuple[str, str], tuple[tuple[str, ...], Fold]]:
    """(service, table) → the topics its view folds and the fold (as each app.py wires it)."""
    from services.inspection import app as inspection
    from services.inspection import handlers as inspection_handlers
    from services.pickup import handlers as pickup
    from services.refund import handlers as refund
    from services.returns import handlers as returns
    from services.risk import handlers as risk
    from services.warehouse_intake import handlers as intake

    return {
        ("returns", "answers"): ((RETURNS_EVENTS.name,), returns.fold_answer),
        ("pickup", "pickups"): ((PICKUP_EVENTS.name,), pickup.fold_answers),
        ("inspection", "returns"): (inspection.FOLLOWED_NAMES, inspection_handlers.fold_return),
        ("inspection", "scans"): ((INSPECTION_EVENTS.name,), inspection_handlers.fold_scan),
        ("warehouse-intake", "intakes"): ((INTAKE_EVENTS.name,), intake.fold_intake),
        ("refund", "refunds"): ((REFUND_EVENTS.name,), refund.fold_answers),
        ("risk", "cases"): ((RISK_EVENTS.name,), risk.fold_case),
        ("risk", "standings"): ((RISK_SELLERS.name,), risk.fold_standing),
    }


def changelog_topic(service: str, table: str) -> str:
    return f"boomerang-{service}-{table}-changelog"


def _partitions(topic: str) -> int:
    for spec in ALL_TOPICS:
        if spec.name == topic:
            return spec.partitions
    raise KeyError(f"{topic} is not a declared topic")


async def read_table(bootstrap: str, service: str, table: str) -> dict[str, Any]:
    """The table's latest value per key (a tombstone removes the key)."""
    if (view := views().get((service, table))) is not None:
        return await _fold_view(bootstrap, *view)
    topic = changelog_topic(service, table)
    rows: dict[str, Any] = {}
    for message in await read_topic(bootstrap, topic, _partitions(topic)):
        key = json.loads(message.key) if message.key else None
        if not isinstance(key, str):
            continue
        if message.value is None:
            rows.pop(key, None)
        else:
            rows[key] = value_of(message.value)
    return rows


async def _fold_view(bootstrap: str, topics: tuple[str, ...], fold: Fold) -> dict[str, Any]:
    from services.eventing.avro_codec import AvroCodec, CodecError
    from services.eventing.schema_catalogue import SchemaCatalogue

    codec = AvroCodec(SchemaCatalogue.load())
    rows: dict[str, Any] = {}
    for topic in topics:
        for message in await read_topic(bootstrap, topic, _partitions(topic)):
            if message.value is None:
                continue
            try:
                decoded = codec.decode(message.value)
            except CodecError:
                continue  # a poison record: the service dead-lettered it, its view skipped it
            fold(rows, decoded.name, decoded.record)
    return rows


async def read_tables(
    bootstrap: str, needed: dict[str, set[str]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """service → table → rows, for the tables `needed` (service → table names)."""
    return {
        service: {table: await read_table(bootstrap, service, table) for table in sorted(tables)}
        for service, tables in needed.items()
    }
