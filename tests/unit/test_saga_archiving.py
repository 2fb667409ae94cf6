"""When a finished saga is archived, and what its archived record and view hold (pure)."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from services.decisions.saga import SagaConfig, SagaState, Status
from services.decisions.saga.archiving import archive_at, archived_record, archived_view

CONFIG = SagaConfig(finished_retention_ms=60_000)


@given(st.sampled_from(list(Status)), st.integers(0, 2**42))
def test_only_a_saga_that_ended_without_waiting_for_a_person_is_archived(status, updated_at):
    state = SagaState("RMA-1", status=status, updated_at=updated_at)
    at = archive_at(state, CONFIG)
    if state.terminal and status != Status.NEEDS_ATTENTION:
        assert at == updated_at + 60_000
    else:
        assert at is None


def test_the_archived_record_is_the_same_event_when_made_again():
    view = {"return_id": "RMA-1", "status": "COMPLETED", "history": [{"event_type": "X"}]}
    first = archived_record("RMA-1", "COMPLETED", 1_000, view, now_ms=5_000)
    again = archived_record("RMA-1", "COMPLETED", 1_000, view, now_ms=9_000)
    assert first["envelope"]["event_id"] == again["envelope"]["event_id"]
    later = archived_record("RMA-1", "COMPLETED", 2_000, view, now_ms=9_000)
    assert later["envelope"]["event_id"] != first["envelope"]["event_id"]
    shown = archived_view(first["view_json"], "COMPLETED", 1_000)
    assert shown == {**view, "archived": True, "finished_at": 1_000}
    assert orjson.loads(first["view_json"]) == view


def test_a_sagaarchived_no_saga_could_have_been_archived_as_is_refused():
    import pytest

    from services.coordinator.archived_sagas import archived_saga
    from services.eventing.handler_contract import DomainRejection

    view = {"return_id": "RMA-1", "status": "COMPLETED"}
    good = archived_record("RMA-1", "COMPLETED", 1_000, view, now_ms=5_000)
    assert archived_saga(good).status == "COMPLETED"
    for bad in (
        {**good, "status": "aSTQKDPJwG"},  # a poison record's random string
        {**good, "status": "NEEDS_ATTENTION"},  # kept for a person, never archived
        {**good, "view_json": "not json"},
        {**good, "view_json": "[1, 2]"},
    ):
        with pytest.raises(DomainRejection):
            archived_saga(bad)
