"""The dead-letter report a person on call reads: groups, counts, attempts, age, one record."""

from __future__ import annotations

import json

from click.testing import CliRunner

from services.cli import main
from services.eventing.avro_codec import AvroCodec
from services.eventing.dead_letters import FailedRecord, dead_letter_headers
from services.eventing.schema_catalogue import SchemaCatalogue
from services.tools.oncall.dead_letter_report import DeadLetter, describe, summarise
from tests.support.return_events import event

NOW = 1_800_000_100_000
CODEC = AvroCodec(SchemaCatalogue.load())


class Rejected(ValueError):
    reason = "invalid-refund"


def letter(offset: int, error: BaseException, *, age_s: int = 10, value=b"\x00", headers=()):
    failed = FailedRecord("boomerang.refund.commands", 2, 40 + offset, b"RMA-1", value, headers)
    return DeadLetter(
        "boomerang.refund.commands.dlq",
        0,
        offset,
        NOW - age_s * 1000,
        b"RMA-1",
        value,
        tuple(dead_letter_headers(failed, error, "refund")),
    )


def decode(value: bytes):
    decoded = CODEC.decode(value)
    return decoded.name, decoded.record


def test_dead_letters_are_grouped_by_topic_and_reason_largest_first():
    letters = [
        letter(0, Rejected("amount is negative"), age_s=300),
        letter(1, Rejected("amount is negative"), age_s=20),
        letter(2, KeyError("envelope")),
    ]
    report = summarise(letters, NOW)
    assert report["total"] == 3
    first, second = report["groups"]
    assert (first["original_topic"], first["reason"], first["count"]) == (
        "boomerang.refund.commands",
        "invalid-refund",
        2,
    )
    assert (first["oldest_age_s"], first["newest_age_s"]) == (300, 20)
    assert first["services"] == ["refund"]
    assert first["sample"] == {
        "topic": "boomerang.refund.commands.dlq",
        "partition": 0,
        "offset": 0,
        "message": "amount is negative",
    }
    assert (second["reason"], second["count"]) == ("KeyError", 1)


def test_a_record_that_failed_again_shows_its_highest_attempt():
    once = letter(0, Rejected("bad"))
    again = letter(1, Rejected("bad"), headers=once.headers)  # redriven, failed again
    [group] = summarise([once, again], NOW)["groups"]
    assert group["max_attempt"] == 2
    assert again.original_topic == "boomerang.refund.commands"


def test_no_dead_letters_is_an_empty_report():
    assert summarise([], NOW) == {"total": 0, "not_redriven": 0, "groups": []}


def test_letters_redriven_already_are_counted_per_group():
    letters = [letter(0, Rejected("x")), letter(1, Rejected("x"))]
    report = summarise(letters, NOW, frozenset({"boomerang.refund.commands.dlq/0/1"}))
    [group] = report["groups"]
    assert (group["count"], group["redriven"]) == (2, 1)
    assert (report["total"], report["not_redriven"]) == (2, 1)


def test_one_dead_letter_shows_every_header_and_its_payload_decoded():
    record = event("RefundVoided", "RMA-1")
    shown = describe(letter(0, Rejected("x"), value=CODEC.encode("RefundVoided", record)), decode)
    assert shown["payload"]["decoded"] is True
    assert shown["payload"]["event_type"] == "RefundVoided"
    assert shown["payload"]["record"]["envelope"]["event_id"] == record["envelope"]["event_id"]
    assert shown["headers"]["dlq.error.reason"] == "invalid-refund"
    assert shown["headers"]["dlq.original.offset"] == "40"
    assert (shown["reason"], shown["attempt"], shown["key"]) == ("invalid-refund", 1, "RMA-1")


def test_a_payload_the_codec_cannot_read_says_why_and_shows_its_first_bytes():
    shown = describe(letter(0, Rejected("x"), value=b"\xde\xad\xbe\xef"), decode)
    assert shown["payload"]["decoded"] is False
    assert shown["payload"]["hex_preview"] == "deadbeef"
    assert shown["payload"]["why_not"]
    json.dumps(shown)  # printable as JSON


def test_the_dlq_commands_explain_themselves():
    runner = CliRunner()
    for args in (["dlq", "--help"], ["dlq", "list", "--help"], ["dlq", "show", "--help"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output


def test_bad_arguments_exit_2_with_a_clear_message():
    runner = CliRunner()
    unknown = runner.invoke(main, ["dlq", "list", "--topic", "nope"])
    assert unknown.exit_code == 2
    assert "'nope' is not a topic of the catalogue" in unknown.output
    negative = runner.invoke(main, ["dlq", "show", "boomerang.refund.commands.dlq", "0", "-1"])
    assert negative.exit_code == 2
    missing = runner.invoke(main, ["dlq", "show", "boomerang.refund.commands.dlq"])
    assert missing.exit_code == 2
    assert "Missing argument" in missing.output
