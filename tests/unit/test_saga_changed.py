"""`saga.changed` is dataclasses.replace for a saga state, only cheaper."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.decisions.saga import SagaState, Status, changed

CHANGES = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(list(Status)),
        "timer": st.dictionaries(st.sampled_from(["id", "kind", "due_at"]), st.integers()),
        "timers_set": st.integers(0, 9),
        "processed_event_ids": st.lists(st.uuids().map(str), max_size=3).map(tuple),
        "updated_at": st.integers(0, 2**40),
        "tries": st.dictionaries(st.sampled_from(["PICKUP", "REFUND"]), st.integers(0, 5)),
    },
)


@given(first=CHANGES, second=CHANGES)
def test_changed_gives_what_replace_gives_and_leaves_the_original_alone(first, second):
    state = SagaState("RMA-CHANGED-1", correlation_id="c-1", created_at=7)
    once = changed(state, **first)
    assert once == dataclasses.replace(state, **first)
    assert changed(once, **second) == dataclasses.replace(once, **second)
    assert state == SagaState("RMA-CHANGED-1", correlation_id="c-1", created_at=7)
    assert type(once) is SagaState and hash(once.return_id)


def test_an_unknown_field_is_refused_as_replace_refuses_it():
    with pytest.raises(TypeError, match="outbox"):
        changed(SagaState("RMA-CHANGED-2"), outbox=())
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed(SagaState("RMA-CHANGED-2")).status = Status.COMPLETED  # type: ignore[misc]
