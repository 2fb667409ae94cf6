"""The topic bootstrapper on a real broker: creates, is idempotent, reports drift."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from services.eventing.topic_bootstrap import bootstrap_topics
from services.eventing.topics import (
    OPERATIONS_AUDIT,
    RETURNS_EVENTS,
    SAGA_CHANGELOG,
    TopicSpec,
    dead_letter_topic,
)


def _isolated_specs() -> list[TopicSpec]:
    """Copies of a few declared topics under a unique prefix, so tests don't share topics."""
    prefix = f"it-{uuid.uuid4().hex[:8]}-"
    picks = [RETURNS_EVENTS, dead_letter_topic(RETURNS_EVENTS), SAGA_CHANGELOG, OPERATIONS_AUDIT]
    return [replace(t, name=prefix + t.name) for t in picks]


async def _alter(bootstrap: str, topic: str, retention_ms: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, topic, configs={"retention.ms": retention_ms}
                )
            ]
        )
        await admin.create_partitions({topic: NewPartitions(total_count=partitions)})
    finally:
        await admin.close()


def test_creates_missing_topics_then_is_idempotent(kafka_bootstrap):
    specs = _isolated_specs()
    first = asyncio.run(bootstrap_topics(kafka_bootstrap, specs))
    assert sorted(first.created) == sorted(s.name for s in specs)
    assert first.clean

    second = asyncio.run(bootstrap_topics(kafka_bootstrap, specs))
    assert second.created == []
    assert sorted(second.unchanged) == sorted(s.name for s in specs)
    assert second.clean


def test_check_mode_reports_missing_topics_without_creating(kafka_bootstrap):
    specs = _isolated_specs()
    report = asyncio.run(bootstrap_topics(kafka_bootstrap, specs, create=False))
    assert sorted(report.missing) == sorted(s.name for s in specs)
    assert not report.clean
    again = asyncio.run(bootstrap_topics(kafka_bootstrap, specs, create=False))
    assert again.missing == report.missing  # still nothing created


def test_created_topics_carry_the_declared_settings_and_drift_is_reported(kafka_bootstrap):
    specs = _isolated_specs()
    asyncio.run(bootstrap_topics(kafka_bootstrap, specs))
    changelog = next(s for s in specs if s.name.endswith("-changelog"))
    events = specs[0]
    asyncio.run(_alter(kafka_bootstrap, events.name, "1000", events.partitions + 2))

    deadline = time.monotonic() + 20  # the cluster's metadata catches up with the changes
    while True:
        report = asyncio.run(bootstrap_topics(kafka_bootstrap, specs))
        drift = {(d.topic, d.setting): (d.declared, d.actual) for d in report.drift}
        if len(drift) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert drift == {
        (events.name, "retention.ms"): (str(events.retention_ms), "1000"),
        (events.name, "partitions"): (str(events.partitions), str(events.partitions + 2)),
    }
    assert not any(d.topic == changelog.name for d in report.drift), "compacted changelog matches"
    assert any(line.startswith("  drift") for line in report.lines())


def test_drifted_settings_are_set_to_the_declared_ones_when_asked_and_partitions_never(
    kafka_bootstrap,
):
    specs = _isolated_specs()
    asyncio.run(bootstrap_topics(kafka_bootstrap, specs))
    events = specs[0]
    asyncio.run(_alter(kafka_bootstrap, events.name, "1000", events.partitions + 1))
    deadline = time.monotonic() + 20
    while True:
        report = asyncio.run(bootstrap_topics(kafka_bootstrap, specs, apply_settings=True))
        if report.applied or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [(d.topic, d.setting, d.actual) for d in report.applied] == [
        (events.name, "retention.ms", "1000")
    ]
    assert {(d.topic, d.setting) for d in report.drift} <= {(events.name, "partitions")}
    assert any(line.startswith("  applied") for line in report.lines())
    deadline = time.monotonic() + 20
    while True:  # the cluster now holds the declared retention; the partitions stay drift
        after = asyncio.run(bootstrap_topics(kafka_bootstrap, specs))
        settings = {(d.topic, d.setting) for d in after.drift}
        if settings == {(events.name, "partitions")} or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert settings == {(events.name, "partitions")}
