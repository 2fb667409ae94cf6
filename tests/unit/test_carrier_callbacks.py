"""Carrier callbacks: body → pickup event (validated, deterministic id, Avro-encodable) and the
HMAC signature that guards them."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.eventing.avro_codec import AvroCodec
from services.eventing.request_fields import ApiError
from services.eventing.schema_catalogue import SchemaCatalogue
from services.eventing.webhook_signature import (
    CARRIER_SIGNATURE,
    DEFAULT_TOLERANCE_S,
    SignatureError,
    sign,
    verify,
)
from services.pickup.callback_parsing import FAILURE_REASONS, callback_event

CODEC = AvroCodec(SchemaCatalogue.load())
LONG_MAX = 2**63 - 1

TIMESTAMP_HEADER = CARRIER_SIGNATURE.timestamp_header
SIGNATURE_HEADER = CARRIER_SIGNATURE.signature_header
signature_headers = CARRIER_SIGNATURE.signature_headers


def callback(**overrides: Any) -> dict[str, Any]:
    raw = {
        "callback_id": "CB-1",
        "return_id": "RMA-1",
        "booking_id": "BK-1",
        "tracking_number": "TRK-1",
        "status": "collected",
        "occurred_at": 1_790_000_000_000,
        "attempt_no": 1,
        "carrier_noted_damage": False,
        "parcel_weight_grams": 800,
    }
    raw.update(overrides)
    return raw


def failed(**overrides: Any) -> dict[str, Any]:
    return callback(**{"status": "attempt_failed", "reason": "BUYER_ABSENT", **overrides})


def fields_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ApiError) as info:
        callback_event(raw, "pickup")
    assert info.value.status == 422
    return [problem.field for problem in info.value.fields]


def roundtrip(name: str, record: dict[str, Any]) -> dict[str, Any]:
    return CODEC.decode(CODEC.encode(name, record)).record


# ------------------------------------------------------------------ collected


def test_collected_becomes_pickup_completed() -> None:
    name, record = callback_event(callback(), "pickup")
    assert name == "PickupCompleted"
    assert {k: v for k, v in record.items() if k != "envelope"} == {
        "booking_id": "BK-1",
        "tracking_number": "TRK-1",
        "collected_at": 1_790_000_000_000,
        "carrier_noted_damage": False,
        "parcel_weight_grams": 800,
    }


def test_pickup_completed_envelope_names_the_event_return_and_producer() -> None:
    _, record = callback_event(callback(), "pickup")
    envelope = record["envelope"]
    assert envelope["event_type"] == "PickupCompleted"
    assert envelope["return_id"] == "RMA-1"
    assert envelope["producer"] == "pickup"
    assert envelope["attempt"] == 1


def test_carrier_noted_damage_is_passed_on() -> None:
    _, record = callback_event(callback(carrier_noted_damage=True), "pickup")
    assert record["carrier_noted_damage"] is True


def test_carrier_noted_damage_defaults_to_false() -> None:
    raw = callback()
    del raw["carrier_noted_damage"]
    assert callback_event(raw, "pickup")[1]["carrier_noted_damage"] is False


def test_parcel_weight_is_optional() -> None:
    raw = callback()
    del raw["parcel_weight_grams"]
    assert callback_event(raw, "pickup")[1]["parcel_weight_grams"] is None


def test_reason_is_ignored_when_collected() -> None:
    name, record = callback_event(callback(reason="NONSENSE"), "pickup")
    assert name == "PickupCompleted"
    assert "failure_reason" not in record


def test_pickup_completed_encodes_with_the_avro_codec() -> None:
    name, record = callback_event(callback(), "pickup")
    assert roundtrip(name, record) == record


def test_pickup_completed_without_weight_encodes_with_the_avro_codec() -> None:
    raw = callback()
    del raw["parcel_weight_grams"], raw["carrier_noted_damage"]
    name, record = callback_event(raw, "pickup")
    assert roundtrip(name, record) == record


# ------------------------------------------------------------------ attempt_failed


def test_attempt_failed_becomes_pickup_attempt_failed_with_its_reason() -> None:
    name, record = callback_event(failed(attempt_no=2, reason="ADDRESS_NOT_FOUND"), "pickup")
    assert name == "PickupAttemptFailed"
    assert record["envelope"]["event_type"] == "PickupAttemptFailed"
    assert {k: v for k, v in record.items() if k != "envelope"} == {
        "booking_id": "BK-1",
        "attempt_no": 2,
        "failure_reason": "ADDRESS_NOT_FOUND",
        "detail": "carrier reported ADDRESS_NOT_FOUND",
        "retryable": True,
    }


@pytest.mark.parametrize("reason", sorted(FAILURE_REASONS))
def test_every_failure_reason_is_accepted_and_encodes(reason: str) -> None:
    name, record = callback_event(failed(reason=reason), "pickup")
    assert record["failure_reason"] == reason
    assert roundtrip(name, record) == record


@pytest.mark.parametrize("reason", [None, "", "buyer_absent", "CARRIER_ERROR", "LOST", 1], ids=repr)
def test_attempt_failed_with_a_bad_reason_is_refused(reason: Any) -> None:
    assert fields_of(failed(reason=reason)) == ["reason"]


def test_attempt_failed_without_a_reason_is_refused() -> None:
    raw = callback(status="attempt_failed")
    assert fields_of(raw) == ["reason"]


# ------------------------------------------------------------------ event ids


def test_same_callback_id_gives_the_same_event_id() -> None:
    first = callback_event(callback(), "pickup")[1]["envelope"]["event_id"]
    again = callback_event(callback(), "pickup")[1]["envelope"]["event_id"]
    assert first == again


def test_redelivered_attempt_failed_gives_the_same_event_id() -> None:
    first = callback_event(failed(), "pickup")[1]["envelope"]["event_id"]
    again = callback_event(failed(), "pickup")[1]["envelope"]["event_id"]
    assert first == again


def test_different_callback_ids_give_different_event_ids() -> None:
    first = callback_event(callback(callback_id="CB-1"), "pickup")[1]["envelope"]["event_id"]
    other = callback_event(callback(callback_id="CB-2"), "pickup")[1]["envelope"]["event_id"]
    assert first != other


def test_event_id_is_a_uuid() -> None:
    event_id = callback_event(callback(), "pickup")[1]["envelope"]["event_id"]
    assert str(uuid.UUID(event_id)) == event_id


@given(callback_id=st.text(min_size=1, max_size=64).filter(str.strip))
def test_event_id_depends_only_on_the_callback_id(callback_id: str) -> None:
    a = callback_event(callback(callback_id=callback_id, occurred_at=1), "pickup")
    b = callback_event(callback(callback_id=callback_id, occurred_at=2, booking_id="X"), "p2")
    assert a[1]["envelope"]["event_id"] == b[1]["envelope"]["event_id"]


# ------------------------------------------------------------------ invalid bodies


@pytest.mark.parametrize(
    "key",
    [
        "callback_id",
        "return_id",
        "booking_id",
        "tracking_number",
        "status",
        "occurred_at",
        "attempt_no",
    ],
)
def test_missing_required_field_is_named(key: str) -> None:
    raw = callback()
    del raw[key]
    assert fields_of(raw) == [key]


@pytest.mark.parametrize("status", ["delivered", "COLLECTED", "", None, 1, "failed"], ids=repr)
def test_unknown_status_is_refused(status: Any) -> None:
    assert fields_of(callback(status=status)) == ["status"]


@pytest.mark.parametrize("key", ["callback_id", "return_id", "booking_id", "tracking_number"])
@pytest.mark.parametrize("value", ["", " ", 7, "X" * 65])
def test_bad_text_field_is_refused(key: str, value: Any) -> None:
    assert fields_of(callback(**{key: value})) == [key]


# JSON Schema's integers, as the document says: 800 and 800.0 are the same number
@pytest.mark.parametrize(
    ("key", "value"),
    [("occurred_at", 1_790_000_000_000.0), ("attempt_no", 2.0), ("parcel_weight_grams", 800.0)],
)
def test_a_whole_number_written_with_a_fraction_is_that_integer(key: str, value: float) -> None:
    event = callback_event(callback(**{key: value}), "pickup")
    found = json.dumps(event)
    assert f"{int(value)}" in found and f"{value}" not in found


@pytest.mark.parametrize("value", [-1, 1.5, "1790000000000", True])
def test_bad_occurred_at_is_refused(value: Any) -> None:
    assert fields_of(callback(occurred_at=value)) == ["occurred_at"]


@pytest.mark.parametrize("value", [0, 101, 1.5, "1", True])
def test_bad_attempt_no_is_refused(value: Any) -> None:
    assert fields_of(callback(attempt_no=value)) == ["attempt_no"]


@pytest.mark.parametrize("value", ["yes", 1, 0, None, "false"])
def test_carrier_noted_damage_must_be_a_boolean(value: Any) -> None:
    assert fields_of(callback(carrier_noted_damage=value)) == ["carrier_noted_damage"]


@pytest.mark.parametrize("value", [-1, 10**7 + 1, 800.5, "800", True])
def test_bad_parcel_weight_is_refused(value: Any) -> None:
    assert fields_of(callback(parcel_weight_grams=value)) == ["parcel_weight_grams"]


def test_every_problem_is_reported_at_once() -> None:
    raw = callback(status="attempt_failed", reason="LOST", attempt_no=0, callback_id="")
    del raw["booking_id"]
    assert sorted(fields_of(raw)) == sorted(["callback_id", "booking_id", "attempt_no", "reason"])


def test_occurred_at_beyond_avro_long_is_refused_not_a_record_that_cannot_be_encoded() -> None:
    try:
        name, record = callback_event(callback(occurred_at=LONG_MAX + 1), "pickup")
    except ApiError as exc:
        assert [f.field for f in exc.fields] == ["occurred_at"]
        return
    CODEC.encode(name, record)


valid_callbacks = st.fixed_dictionaries(
    {
        "callback_id": st.text(min_size=1, max_size=64).filter(str.strip),
        "return_id": st.text(min_size=1, max_size=64).filter(str.strip),
        "booking_id": st.text(min_size=1, max_size=64).filter(str.strip),
        "tracking_number": st.text(min_size=1, max_size=64).filter(str.strip),
        "status": st.sampled_from(["collected", "attempt_failed"]),
        "occurred_at": st.integers(0, LONG_MAX),
        "attempt_no": st.integers(1, 100),
        "carrier_noted_damage": st.booleans(),
        "parcel_weight_grams": st.none() | st.integers(0, 10**7),
        "reason": st.sampled_from(sorted(FAILURE_REASONS)),
    }
)


@given(raw=valid_callbacks)
def test_every_valid_callback_gives_a_record_the_codec_encodes(raw: dict[str, Any]) -> None:
    name, record = callback_event(raw, "pickup")
    assert name == ("PickupCompleted" if raw["status"] == "collected" else "PickupAttemptFailed")
    assert roundtrip(name, record) == record


# ------------------------------------------------------------------ signature

SECRET = b"carrier-shared-secret"
NOW = 1_790_000_000
BODY = json.dumps(callback()).encode()


def headers(secret: bytes = SECRET, timestamp: int = NOW, body: bytes = BODY) -> dict[str, str]:
    return signature_headers(secret, timestamp, body)


def refusal(
    timestamp: str | None,
    signature: str | None,
    body: bytes = BODY,
    now_s: int = NOW,
    **kw: Any,
) -> str:
    with pytest.raises(SignatureError) as info:
        verify(SECRET, timestamp, signature, body, now_s, **kw)
    return str(info.value)


def test_signature_is_sha256_hex_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET, f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == f"sha256={expected}"


def test_signature_headers_carry_timestamp_and_signature() -> None:
    assert headers() == {
        TIMESTAMP_HEADER: str(NOW),
        SIGNATURE_HEADER: sign(SECRET, NOW, BODY),
    }


def test_valid_signature_is_accepted() -> None:
    h = headers()
    assert verify(SECRET, h[TIMESTAMP_HEADER], h[SIGNATURE_HEADER], BODY, NOW) is None


def test_valid_signature_on_an_empty_body_is_accepted() -> None:
    h = headers(body=b"")
    verify(SECRET, h[TIMESTAMP_HEADER], h[SIGNATURE_HEADER], b"", NOW)


@pytest.mark.parametrize(
    "tampered",
    [BODY.replace(b"collected", b"attempt_failed"), BODY + b" ", BODY[:-1], b""],
    ids=["changed", "appended", "truncated", "empty"],
)
def test_tampered_body_is_refused(tampered: bytes) -> None:
    h = headers()
    assert refusal(h[TIMESTAMP_HEADER], h[SIGNATURE_HEADER], tampered) == (
        "signature does not match the body"
    )


def test_wrong_secret_is_refused() -> None:
    h = headers(secret=b"another-secret")
    assert refusal(h[TIMESTAMP_HEADER], h[SIGNATURE_HEADER]) == "signature does not match the body"


def test_signature_of_another_timestamp_is_refused() -> None:
    signed_earlier = sign(SECRET, NOW - 1, BODY)
    assert refusal(str(NOW), signed_earlier) == "signature does not match the body"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s.upper(),
        lambda s: s.removeprefix("sha256="),
        lambda s: "sha1=" + s.removeprefix("sha256="),
        lambda s: s[:-1],
        lambda s: s + "0",
        lambda s: "sha256=",
    ],
    ids=["uppercase", "no-prefix", "other-algorithm", "short", "long", "empty-digest"],
)
def test_malformed_signature_is_refused(mangle: Any) -> None:
    h = headers()
    assert refusal(h[TIMESTAMP_HEADER], mangle(h[SIGNATURE_HEADER])) == (
        "signature does not match the body"
    )


@pytest.mark.parametrize(
    ("timestamp", "signature"),
    [(None, "sig"), (str(NOW), None), (None, None), ("", "sig"), (str(NOW), "")],
    ids=["no-timestamp", "no-signature", "neither", "empty-timestamp", "empty-signature"],
)
def test_missing_headers_are_refused(timestamp: str | None, signature: str | None) -> None:
    assert refusal(timestamp, signature) == "missing signature headers"


@pytest.mark.parametrize("timestamp", ["abc", "1790000000.5", "1.79e9", "0x6ab0", "12 34"])
def test_non_integer_timestamp_is_refused(timestamp: str) -> None:
    assert refusal(timestamp, headers()[SIGNATURE_HEADER]) == "timestamp is not an integer"


@pytest.mark.parametrize("offset", [DEFAULT_TOLERANCE_S, -DEFAULT_TOLERANCE_S, 0, 1, -1])
def test_timestamp_within_the_tolerance_is_accepted(offset: int) -> None:
    h = headers(timestamp=NOW + offset)
    verify(SECRET, h[TIMESTAMP_HEADER], h[SIGNATURE_HEADER], BODY, NOW)


@pytest.mark.parametrize(
    "offset",
    [DEFAULT_TOLERANCE_S + 1, -(DEFAULT_TOLERANCE_S + 1), 86_400, -86_400],
    ids=["just-future", "just-past", "day-future", "day-past"],
)
def test_stale_timestamp_is_refused_in_both_directions(offset: int) -> None:
    h = headers(timestamp=NOW + offset)
    message = refusal(h[TIMESTAMP_HEADER], h[SIGNATURE_HEADER])
    assert message.startswith("stale timestamp")
    assert f"{-offset}s off" in message


def test_tolerance_can_be_narrowed() -> None:
    h = headers(timestamp=NOW - 10)
    verify(SECRET, h[TIMESTAMP_HEADER], h[SIGNATURE_HEADER], BODY, NOW, tolerance_s=10)
    assert refusal(h[TIMESTAMP_HEADER], h[SIGNATURE_HEADER], tolerance_s=9).startswith("stale")


def test_stale_check_comes_before_the_signature_check() -> None:
    message = refusal(str(NOW - 10_000), "sha256=bogus")
    assert message.startswith("stale timestamp")


def test_refusal_messages_are_distinct() -> None:
    h = headers()
    messages = {
        refusal(None, h[SIGNATURE_HEADER]),
        refusal("soon", h[SIGNATURE_HEADER]),
        refusal(str(NOW - 1000), h[SIGNATURE_HEADER]),
        refusal(h[TIMESTAMP_HEADER], sign(b"wrong", NOW, BODY)),
    }
    assert len(messages) == 4


def test_signature_error_is_a_value_error() -> None:
    assert issubclass(SignatureError, ValueError)


@pytest.mark.parametrize(
    "signature", ["sha256=é", "sha256=" + "ü" * 64], ids=["short", "digest-length"]
)
def test_non_ascii_signature_header_is_refused_as_a_bad_signature(signature: str) -> None:
    assert refusal(str(NOW), signature) == "signature header is not ASCII"


@given(body=st.binary(max_size=512), secret=st.binary(min_size=1, max_size=64))
def test_any_body_signed_with_the_secret_verifies_and_a_flipped_byte_does_not(
    body: bytes, secret: bytes
) -> None:
    h = signature_headers(secret, NOW, body)
    verify(secret, h[TIMESTAMP_HEADER], h[SIGNATURE_HEADER], body, NOW)
    if body:
        flipped = bytes([body[0] ^ 1]) + body[1:]
        with pytest.raises(SignatureError):
            verify(secret, h[TIMESTAMP_HEADER], h[SIGNATURE_HEADER], flipped, NOW)
