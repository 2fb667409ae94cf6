"""The topic catalogue: every message has exactly one home; replication fits the cluster."""

from __future__ import annotations

import pytest

from services.eventing.schema_catalogue import SchemaCatalogue
from services.eventing.topics import (
    ALL_TOPICS,
    GLOBAL_TABLES,
    SAGA_CHANGELOG,
    STREAMS,
    by_name,
    dead_letter_topic,
    topic_for_record,
)


def test_every_message_is_written_to_exactly_one_topic():
    for schema in SchemaCatalogue.load().messages():
        homes = [s.name for s in (*STREAMS, *GLOBAL_TABLES) if schema.name in s.record_types]
        assert len(homes) == 1, (schema.name, homes)
        assert topic_for_record(schema.name).name == homes[0]


def test_topic_names_are_unique():
    names = [t.name for t in ALL_TOPICS]
    assert len(names) == len(set(names))


def test_every_stream_has_a_dead_letter_topic_and_no_topic_is_declared_that_nobody_uses():
    names = {t.name for t in ALL_TOPICS}
    for stream in STREAMS:
        assert dead_letter_topic(stream).name in names
        assert by_name(f"{stream.name}.dlq").retention_ms >= stream.retention_ms
    # transient failures are retried in the consume loop: no retry topics
    assert not [name for name in names if name.endswith(".retry")]


def test_saga_changelog_is_compacted_and_co_partitioned_with_its_inputs():
    assert SAGA_CHANGELOG.cleanup_policy == "compact"
    assert {s.partitions for s in STREAMS} == {SAGA_CHANGELOG.partitions}


def test_a_table_read_whole_is_compacted_and_kept_while_keys_may_be_named():
    for table in GLOBAL_TABLES:
        assert (table.cleanup_policy, table.retention_ms) == ("compact", -1)
        assert table in ALL_TOPICS and table not in STREAMS  # nobody consumes it in a group


@pytest.mark.parametrize(
    ("brokers", "replication", "min_isr"), [(1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 3, 2)]
)
def test_replication_is_capped_to_the_cluster(brokers, replication, min_isr):
    for spec in ALL_TOPICS:
        assert spec.replication_for(brokers) == replication
        assert spec.config(brokers)["min.insync.replicas"] == str(min_isr)


def test_unknown_record_or_topic_is_a_key_error():
    with pytest.raises(KeyError):
        topic_for_record("NoSuchEvent")
    with pytest.raises(KeyError):
        by_name("no.such.topic")


def test_the_steps_of_a_taken_return_are_not_on_the_topic_paused_for_new_ones():
    """The coordinator pauses returns.events, where new returns start, while it is busy
    (its admission topic): a buyer's bank account, a step of a return already taken, must
    not wait behind them, yet must reach the coordinator."""
    from services.coordinator.handlers import INPUTS

    home = topic_for_record("BuyerDetailsProvided")
    assert home in INPUTS and home.name != "boomerang.returns.events"
    assert topic_for_record("ReturnAccepted").name == "boomerang.returns.events"
