"""Choosing dead letters to redrive, never twice, and what a purge may delete (pure)."""

from __future__ import annotations

from services.eventing.dead_letters import FailedRecord, dead_letter_headers
from services.tools.oncall.dead_letter_redrive import (
    already_redriven,
    choose,
    position,
    purge_cut,
    purged_letters,
    redrive_headers,
)
from services.tools.oncall.dead_letter_report import DeadLetter

NOW = 1_800_000_000_000


class Refused(ValueError):
    reason = "carrier-refused"


def letter(partition: int, offset: int, age_s: int = 60, error=None, headers=()) -> DeadLetter:
    failed = FailedRecord("boomerang.pickup.commands", 1, 7, b"RMA-1", b"\x00", headers)
    return DeadLetter(
        "boomerang.pickup.commands.dlq",
        partition,
        offset,
        NOW - age_s * 1000,
        b"RMA-1",
        b"\x00",
        tuple(dead_letter_headers(failed, error or Refused("404"), "pickup")),
    )


def test_letters_are_chosen_by_reason_and_position_oldest_first():
    letters = [letter(0, 5), letter(0, 2, error=KeyError("x")), letter(1, 0)]
    chosen, skipped = choose(letters, {"carrier-refused"}, set(), set())
    assert [position(m) for m in chosen] == [
        "boomerang.pickup.commands.dlq/0/5",
        "boomerang.pickup.commands.dlq/1/0",
    ]
    assert skipped == []
    only, _ = choose(letters, set(), {"boomerang.pickup.commands.dlq/1/0"}, set())
    assert [position(m) for m in only] == ["boomerang.pickup.commands.dlq/1/0"]


def test_a_letter_redriven_before_is_skipped_not_sent_again():
    trail = [
        {"operation": "dlq.redrive", "result": {"redriven": ["boomerang.pickup.commands.dlq/0/5"]}},
        {"operation": "replay.republish", "result": {"published": 3}},
    ]
    skip = already_redriven(trail)
    chosen, skipped = choose([letter(0, 5), letter(0, 6)], set(), set(), skip)
    assert [m.offset for m in chosen] == [6]
    assert [m.offset for m in skipped] == [5]


def test_a_redriven_record_keeps_its_dead_letter_history_so_a_new_failure_raises_the_attempt():
    sent = letter(0, 5)
    headers = redrive_headers(sent, "op-1", "oncall@example", "carrier URL fixed", NOW)
    named = dict(headers)
    assert named["redrive.source"] == b"boomerang.pickup.commands.dlq/0/5"
    assert named["redrive.reason"] == b"carrier URL fixed"
    assert named["dlq.attempt"] == b"1"
    again = FailedRecord("boomerang.pickup.commands", 3, 90, b"RMA-1", b"\x00", tuple(headers))
    second = dict(dead_letter_headers(again, Refused("404"), "pickup"))
    assert second["dlq.attempt"] == b"2"
    assert second["dlq.original.offset"] == b"7"  # where it first failed, not the redrive copy
    assert second["redrive.operation.id"] == b"op-1"


def test_a_purge_deletes_each_partition_up_to_its_last_letter():
    letters = [letter(0, 3), letter(0, 4), letter(1, 0)]
    cut = purge_cut(letters, None)
    assert cut == {0: 5, 1: 1}
    assert len(purged_letters(letters, cut)) == 3


def test_a_purge_of_old_letters_stops_at_the_first_newer_one():
    letters = [letter(0, 3, age_s=900), letter(0, 4, age_s=10), letter(0, 5, age_s=900)]
    cut = purge_cut(letters, NOW - 600_000)
    assert cut == {0: 4}  # Kafka deletes a prefix: offset 5 stays behind the newer offset 4
    assert [m.offset for m in purged_letters(letters, cut)] == [3]
