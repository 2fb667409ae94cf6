from __future__ import annotations

import uuid

import pytest

from services.eventing.envelope import (
    EnvelopeError,
    check_envelope,
    deterministic_event_id,
    new_envelope,
)


def _record(**changes):
    envelope = new_envelope("RefundIssued", "RMA-1", "refund")
    envelope.update(changes)
    return {"envelope": envelope}


def test_new_envelope_has_a_uuid_and_correlates_to_itself_by_default():
    envelope = new_envelope("ReturnRequested", "RMA-1", "returns")
    assert uuid.UUID(envelope["event_id"])
    assert envelope["correlation_id"] == envelope["event_id"]
    assert envelope["causation_id"] is None
    assert envelope["attempt"] == 1
    assert isinstance(envelope["occurred_at"], int)


def test_deterministic_ids_repeat_for_the_same_effect_and_differ_otherwise():
    assert deterministic_event_id("RMA-1", "refund") == deterministic_event_id("RMA-1", "refund")
    assert deterministic_event_id("RMA-1", "refund") != deterministic_event_id("RMA-2", "refund")
    assert uuid.UUID(deterministic_event_id("RMA-1", "refund")).version == 5


def test_a_consistent_envelope_passes():
    check_envelope("RefundIssued", _record(), key=b"RMA-1")


@pytest.mark.parametrize(
    ("changes", "key", "message"),
    [
        ({"event_type": "RefundFailed"}, None, "does not match record"),
        ({"event_id": "not-a-uuid"}, None, "not a UUID"),
        ({"return_id": ""}, None, "return_id is empty"),
        ({}, b"RMA-2", "is not the return_id"),
        ({"attempt": 0}, None, "below 1"),
    ],
)
def test_inconsistent_envelopes_are_refused(changes, key, message):
    with pytest.raises(EnvelopeError, match=message):
        check_envelope("RefundIssued", _record(**changes), key=key)
