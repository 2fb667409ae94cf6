"""Single-object encoding round trips, and each kind of bad input raising its own error."""

from __future__ import annotations

import copy
import json

import pytest
from fastavro.schema import parse_schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.eventing.avro_codec import (
    HEADER_SIZE,
    MARKER,
    AvroCodec,
    BadMarkerError,
    CodecError,
    CorruptBodyError,
    InvalidRecordError,
    NotAFrameError,
    SchemaResolutionFailedError,
    TruncatedBodyError,
    UnknownFingerprintError,
)
from services.eventing.schema_catalogue import SchemaCatalogue, load_current, make_message_schema
from tests.support.avro_strategies import records, sample_record

CATALOGUE = SchemaCatalogue.load()
CODEC = AvroCodec(CATALOGUE)
MESSAGES = CATALOGUE.messages()


@pytest.mark.parametrize("schema", MESSAGES, ids=lambda s: s.name)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_schema_round_trips(schema, data):
    record = data.draw(records(schema.wire))
    encoded = CODEC.encode(schema.name, record)
    assert encoded[:2] == MARKER
    assert encoded[2:HEADER_SIZE] == schema.fingerprint
    decoded = CODEC.decode(encoded)
    assert decoded.name == schema.name
    assert decoded.record == record


def _sample_bytes(name: str = "ReturnRequested") -> bytes:
    schema = CATALOGUE.get(name)
    record = sample_record(schema.wire)
    return CODEC.encode(name, record)


@pytest.mark.parametrize(
    "data", [b"", b"\xc3", b"\xc3\x01\x00\x00"], ids=["empty", "1-byte", "4-bytes"]
)
def test_too_short_for_a_header_is_not_a_frame(data):
    with pytest.raises(NotAFrameError, match="at least 10 bytes"):
        CODEC.decode(data)


def test_non_bytes_input_is_not_a_frame():
    with pytest.raises(NotAFrameError, match="str"):
        CODEC.decode("C3 01 ...")  # type: ignore[arg-type]


def test_garbage_bytes_have_a_bad_marker():
    with pytest.raises(BadMarkerError, match="expected c301"):
        CODEC.decode(b"this is definitely not avro at all")


def test_json_payload_has_a_bad_marker():
    with pytest.raises(BadMarkerError):
        CODEC.decode(json.dumps({"event_type": "ReturnRequested"}).encode())


def test_unknown_fingerprint():
    data = MARKER + bytes.fromhex("0123456789abcdef") + b"\x00" * 20
    with pytest.raises(UnknownFingerprintError, match="0123456789abcdef"):
        CODEC.decode(data)


def test_every_prefix_of_a_record_is_truncated():
    data = _sample_bytes()
    for cut in range(HEADER_SIZE, len(data)):
        with pytest.raises(TruncatedBodyError, match="ends before the record does"):
            CODEC.decode(data[:cut])


def test_garbage_body_behind_a_valid_header_is_corrupt():
    header = _sample_bytes()[:HEADER_SIZE]
    with pytest.raises(CorruptBodyError):
        CODEC.decode(header + b"\x02" + b"\xff" * 40)  # a string of invalid UTF-8


def test_trailing_bytes_are_corrupt():
    with pytest.raises(CorruptBodyError, match="unexpected byte"):
        CODEC.decode(_sample_bytes() + b"\x00")


def _incompatible_history_catalogue() -> tuple[SchemaCatalogue, bytes]:
    """A catalogue whose history holds a RefundVoided writer with an unresolvable field type."""
    current = load_current(CATALOGUE.get("RefundVoided").source.parents[1])
    old = copy.deepcopy(CATALOGUE.get("RefundVoided").parsed)
    for f in old["fields"]:
        if f["name"] == "provider_refund_id":
            f["type"] = "long"  # the reader expects ["null", "string"]
            f.pop("default", None)
    old_schema = make_message_schema(
        parse_schema(old, named_schemas={}, _write_hint=False), version=1
    )
    catalogue = SchemaCatalogue(current, {old_schema.full_name: [old_schema]})
    old_codec_catalogue = SchemaCatalogue({old_schema.full_name: old_schema})
    record = sample_record(old_schema.wire)
    return catalogue, AvroCodec(old_codec_catalogue).encode("RefundVoided", record)


def test_writer_that_does_not_resolve_into_reader_schema():
    catalogue, data = _incompatible_history_catalogue()
    with pytest.raises(SchemaResolutionFailedError, match="RefundVoided"):
        AvroCodec(catalogue).decode(data)


def test_reader_for_another_record_does_not_resolve():
    with pytest.raises(SchemaResolutionFailedError, match="reader expects"):
        CODEC.decode(_sample_bytes("ReturnRequested"), reader_name="RefundIssued")


def test_five_kinds_of_bad_input_raise_five_distinct_errors():
    data = _sample_bytes()
    _, unresolvable = _incompatible_history_catalogue()
    catalogue, _ = _incompatible_history_catalogue()
    cases = {
        "garbage": (CODEC, b"\x00garbage\xff"),
        "wrong marker": (CODEC, b"\xc3\x02" + data[2:]),
        "unknown fingerprint": (CODEC, MARKER + b"\xff" * 8 + data[HEADER_SIZE:]),
        "truncated body": (CODEC, data[:-3]),
        "fails resolution": (AvroCodec(catalogue), unresolvable),
    }
    raised = {}
    for kind, (codec, bad) in cases.items():
        with pytest.raises(CodecError) as info:
            codec.decode(bad)
        raised[kind] = type(info.value)
    assert len(set(raised.values())) == 5, raised
    assert raised == {
        "garbage": NotAFrameError,
        "wrong marker": BadMarkerError,
        "unknown fingerprint": UnknownFingerprintError,
        "truncated body": TruncatedBodyError,
        "fails resolution": SchemaResolutionFailedError,
    }


def test_every_error_has_a_distinct_reason_code_for_dead_letter_headers():
    classes = [
        NotAFrameError,
        BadMarkerError,
        UnknownFingerprintError,
        TruncatedBodyError,
        CorruptBodyError,
        SchemaResolutionFailedError,
        InvalidRecordError,
    ]
    assert len({c.reason for c in classes}) == len(classes)
    assert all(issubclass(c, CodecError) for c in classes)


def test_encoding_a_record_that_breaks_its_schema_is_refused():
    with pytest.raises(InvalidRecordError, match="ReturnRequested"):
        CODEC.encode("ReturnRequested", {"order_ref": 42})


def test_money_with_a_float_amount_is_refused():
    record = sample_record(CATALOGUE.get("RefundVoided").wire)
    record["amount"]["amount_minor"] = 12.5
    with pytest.raises(InvalidRecordError):
        CODEC.encode("RefundVoided", record)


def test_an_older_published_writer_still_decodes_with_the_current_reader():
    """A field added with a default: v1 records decode, the new field gets its default."""
    current_schema = CATALOGUE.get("ReturnCancelled")
    newer = copy.deepcopy(current_schema.parsed)
    newer["fields"].append({"name": "channel", "type": "string", "default": "app"})
    newer_schema = make_message_schema(parse_schema(newer, named_schemas={}, _write_hint=False))
    catalogue = SchemaCatalogue(
        {newer_schema.full_name: newer_schema}, {newer_schema.full_name: [current_schema]}
    )
    old_bytes = CODEC.encode("ReturnCancelled", sample_record(current_schema.wire))
    decoded = AvroCodec(catalogue).decode(old_bytes)
    assert decoded.record["channel"] == "app"
    assert decoded.writer.fingerprint == current_schema.fingerprint
