"""Where `boomerang topics migrate` puts each record, and when it refuses (pure parts)."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from services.engine.partition_owners import partition_for
from services.engine.state_store import APPLIED_HEADER
from services.eventing.topics import SAGA_ARCHIVE, SAGA_CHANGELOG, STREAMS
from services.tools.oncall.topic_migration import (
    changelog_routing,
    drain_problems,
    new_partition,
    partitioned_topics,
)


@given(st.text(min_size=1, max_size=40), st.integers(0, 3), st.sampled_from([4, 12, 24]))
def test_a_keyed_record_goes_where_the_producers_partitioner_sends_its_key(key, old, count):
    assert new_partition(key.encode(), old, count) == partition_for(key, count)


def test_a_record_without_a_key_keeps_its_partition_number():
    assert new_partition(None, 3, 12) == 3
    assert new_partition(None, 7, 4) == 3


def test_a_changelog_record_follows_the_key_that_wrote_it_and_loses_its_old_offsets():
    stamp = orjson.dumps({"at": {"boomerang.intake.stock-movements": 41}, "key": "WH-1"})
    routing, headers = changelog_routing(orjson.dumps("SKU-1@WH-1"), [(APPLIED_HEADER, stamp)])
    assert routing == b"WH-1" and headers == []


def test_a_changelog_record_written_by_its_own_key_follows_that_key():
    stamp = orjson.dumps({"at": {"boomerang.returns.events": 9}})
    other = ("trace", b"x")
    routing, headers = changelog_routing(orjson.dumps("R-1"), [(APPLIED_HEADER, stamp), other])
    assert routing == b"R-1" and headers == [other]
    # its partition is the one its key's input records now land on
    assert new_partition(routing, 0, 12) == partition_for("R-1", 12)


def test_a_group_with_members_or_lag_is_named_and_a_drained_one_is_not():
    committed = {
        "boomerang-coordinator": {
            ("boomerang.pickup.events", 0): 10,
            ("boomerang.pickup.events", 1): 5,
        },
        "boomerang-refund": {("boomerang.refund.commands", 0): 7},
    }
    ends = {
        ("boomerang.pickup.events", 0): 12,
        ("boomerang.pickup.events", 1): 6,
        ("boomerang.refund.commands", 0): 7,
    }
    problems = drain_problems({"boomerang-refund": 1, "boomerang-coordinator": 0}, committed, ends)
    assert [(p.group, p.topic) for p in problems] == [
        ("boomerang-refund", "*"),
        ("boomerang-coordinator", "boomerang.pickup.events"),
    ]
    assert "3 record(s)" in problems[1].detail
    drained = {g: {tp: ends[tp] for tp in offsets} for g, offsets in committed.items()}
    assert drain_problems({"boomerang-refund": 0}, drained, ends) == []


def test_every_stream_its_dead_letters_and_every_changelog_move_and_nothing_else():
    names = {spec.name for spec in partitioned_topics()}
    assert {s.name for s in STREAMS} <= names and SAGA_ARCHIVE.name in names
    assert SAGA_CHANGELOG.name in names and "boomerang.returns.events.dlq" in names
    assert "boomerang.policy.snapshots" not in names and "boomerang.operations.audit" not in names
