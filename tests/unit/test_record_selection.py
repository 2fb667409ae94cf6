"""Which records an on-call command selects: half-open ranges, content filters, resume."""

from __future__ import annotations

import pytest

from services.tools.oncall.record_selection import (
    RecordFacts,
    Selection,
    SelectionError,
    format_positions,
    parse_duration_ms,
    parse_instant,
    parse_positions,
)

TOPIC = "boomerang.refund.commands"


def facts(offset: int = 10, ts: int = 5_000, partition: int = 0, **kw) -> RecordFacts:
    return RecordFacts(
        TOPIC,
        partition,
        offset,
        ts,
        kw.get("return_id", "RMA-1"),
        kw.get("event_type", "RefundRequested"),
        "e-1",
    )


def test_offsets_include_the_first_and_exclude_the_last():
    selection = Selection(TOPIC, from_offset=10, to_offset=12)
    assert [o for o in (9, 10, 11, 12) if selection.matches(facts(o))] == [10, 11]


def test_times_include_the_first_and_exclude_the_last():
    selection = Selection(TOPIC, from_time_ms=1_000, to_time_ms=3_000)
    chosen = [ts for ts in (999, 1_000, 2_999, 3_000) if selection.matches(facts(ts=ts))]
    assert chosen == [1_000, 2_999]


def test_partitions_return_ids_and_event_types_narrow_the_selection():
    selection = Selection(
        TOPIC,
        partitions=frozenset({1}),
        return_ids=frozenset({"RMA-2"}),
        event_types=frozenset({"RefundVoidRequested"}),
    )
    wanted = facts(partition=1, return_id="RMA-2", event_type="RefundVoidRequested")
    assert selection.matches(wanted)
    assert not selection.matches(facts(partition=0, return_id="RMA-2"))
    assert not selection.matches(facts(partition=1, return_id="RMA-1"))
    assert not selection.matches(facts(partition=1, return_id="RMA-2"))


def test_an_undecodable_record_is_selected_only_when_no_content_filter_is_given():
    poison = RecordFacts(TOPIC, 0, 3, 1, None, None, None)
    assert Selection(TOPIC).matches(poison)
    assert not Selection(TOPIC, return_ids=frozenset({"RMA-1"})).matches(poison)


def test_another_topic_never_matches():
    assert not Selection("boomerang.refund.events").matches(facts())


def test_resume_positions_start_each_partition_where_the_last_run_stopped():
    selection = Selection(TOPIC, from_offset=5, start_at={0: 40})
    assert selection.first_offset(0, 0) == 40
    assert selection.first_offset(1, 0) == 5
    assert selection.first_offset(1, 9) == 9  # the log starts later: never before it
    assert not selection.matches(facts(offset=39, partition=0))
    assert selection.matches(facts(offset=40, partition=0))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"from_offset": 5, "to_offset": 5},
        {"from_offset": -1},
        {"from_time_ms": 10, "to_time_ms": 9},
    ],
)
def test_an_empty_or_backwards_range_is_refused_with_the_option_named(kwargs):
    with pytest.raises(SelectionError, match="--"):
        Selection(TOPIC, **kwargs)


def test_instants_need_a_utc_offset():
    assert parse_instant("2026-11-24T09:30:00Z", "--from-time") == 1795512600000
    assert parse_instant("2026-11-24T10:30:00+01:00", "--from-time") == 1795512600000
    with pytest.raises(SelectionError, match="UTC offset"):
        parse_instant("2026-11-24T09:30:00", "--from-time")
    with pytest.raises(SelectionError, match="not an ISO 8601"):
        parse_instant("yesterday", "--to-time")


def test_positions_round_trip_and_bad_ones_are_refused():
    assert parse_positions("0:120,3:77") == {0: 120, 3: 77}
    assert format_positions({3: 77, 0: 120}) == "0:120,3:77"
    for bad in ("0-120", "", "a:1"):
        with pytest.raises(SelectionError):
            parse_positions(bad)


def test_durations():
    assert parse_duration_ms("90s", "--x") == 90_000
    assert parse_duration_ms("30m", "--x") == 1_800_000
    assert parse_duration_ms("7d", "--x") == 7 * 86_400_000
    with pytest.raises(SelectionError, match="30m"):
        parse_duration_ms("soon", "--stuck-for")


def test_stop_positions_end_each_partition_where_the_interrupted_selection_ended():
    selection = Selection(TOPIC, start_at={0: 40}, stop_at={0: 42, 1: 7})
    assert [o for o in (39, 40, 41, 42) if selection.matches(facts(offset=o, partition=0))] == [
        40,
        41,
    ]
    assert not selection.matches(facts(offset=7, partition=1))
    assert selection.matches(facts(offset=7, partition=2))  # no bound given for partition 2
