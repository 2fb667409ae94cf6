"""The services' dedupe state, read from their tables' changelogs (a thin aiokafka adapter).

A service table is the latest value per key of its compacted changelog
"boomerang-<service>-<table>-changelog"; reading that topic to its end rebuilds the table
without asking the service, so it works while the service is stopped (as a rewind needs).
"""

from __future__ import annotations

import json
from typing import Any

from services.eventing.topics import ALL_TOPICS
from services.tools.oncall.topic_reader import read_topic


def changelog_topic(service: str, table: str) -> str:
    return f"boomerang-{service}-{table}-changelog"


def _partitions(topic: str) -> int:
    for spec in ALL_TOPICS:
        if spec.name == topic:
            return spec.partitions
    raise KeyError(f"{topic} is not a declared changelog")


async def read_table(bootstrap: str, service: str, table: str) -> dict[str, Any]:
    """The table's latest value per key (a tombstone removes the key)."""
    topic = changelog_topic(service, table)
    rows: dict[str, Any] = {}
    for message in await read_topic(bootstrap, topic, _partitions(topic)):
        key = json.loads(message.key) if message.key else None
        if not isinstance(key, str):
            continue
        if message.value is None:
            rows.pop(key, None)
        else:
            rows[key] = json.loads(message.value)
    return rows


async def read_tables(
    bootstrap: str, needed: dict[str, set[str]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """service → table → rows, for the tables `needed` (service → table names)."""
    return {
        service: {table: await read_table(bootstrap, service, table) for table in sorted(tables)}
        for service, tables in needed.items()
    }
