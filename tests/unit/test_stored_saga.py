"""The saga's stored form (saga/stored.py) reads back what it wrote, as JSON, and still reads
the records written in its earlier forms."""

from __future__ import annotations

import itertools
import json

from hypothesis import given
from hypothesis import strategies as st

from services.decisions.saga import decide, status_view, stored
from tests.support.return_events import event
from tests.unit.test_saga import HAPPY_PATH

RID = "RMA-STORED-1"


def completed_saga():
    clock = itertools.count(1_800_000_000_000, 10)
    state, explanation = None, None
    for number, (name, *_) in enumerate(HAPPY_PATH):
        record = event(name, RID, envelope={"event_id": f"E-{number}"})
        after = decide(state, name, record, next(clock)).state
        explanation = stored.explanation_after(explanation, state, after)
        state = after
    return state, explanation


def as_json(value):
    return json.loads(json.dumps(value))


def test_a_completed_saga_read_back_from_its_json_record_decides_and_shows_the_same():
    state, explanation = completed_saga()
    record = as_json(stored.stored_record(state, explanation))
    assert isinstance(record["inspection"]["items"], dict)  # a table: names written once
    assert record["refund_from_plan_but"] == []  # the refund is the plan, and what it adds
    loaded = stored.loaded_state(record)
    assert loaded.inspection == as_json(state.inspection)
    assert loaded.refund == as_json(state.refund)
    assert status_view(stored.shown_state(record)) == as_json(status_view(state))
    timers = [
        row[-1]["timer"] for row in record[stored.EXPLANATION]["history"] if row[-1].get("timer")
    ]
    assert timers and all(isinstance(timer, list) for timer in timers)


def test_a_record_of_the_earlier_form_still_reads_back():
    """Before: the inspection's lists as lists, the refund's copied plan fields named in
    `refund_as_plan`, each history timer whole."""
    state, explanation = completed_saga()
    record = as_json(stored.stored_record(state, explanation))
    plan = state.inspection["refund_plan"]
    older = {
        **record,
        "inspection": as_json(state.inspection),
        "refund": {n: v for n, v in state.refund.items() if plan.get(n) != v},
        "refund_as_plan": sorted(n for n, v in state.refund.items() if plan.get(n) == v),
    }
    del older["refund_from_plan_but"]
    for row, entry in zip(older[stored.EXPLANATION]["history"], state.history, strict=False):
        if "timer" in entry:
            row[-1]["timer"] = entry["timer"]
    assert stored.loaded_state(older) == stored.loaded_state(record)
    assert status_view(stored.shown_state(older)) == status_view(stored.shown_state(record))


@given(
    st.lists(
        st.dictionaries(st.sampled_from("abc"), st.integers() | st.none(), max_size=3),
        max_size=4,
    )
)
def test_records_become_a_table_only_when_they_share_their_names_and_always_come_back(records):
    table = stored.as_table(records)
    assert as_json(stored.from_table(as_json(table))) == records
    shared = records and all(list(r) == list(records[0]) for r in records)
    assert isinstance(table, dict) == bool(shared)


def test_a_timer_whose_id_does_not_say_the_rest_is_kept_whole():
    entry = {
        "at": 1, "event_type": "X", "event_id": "E", "from": "NEW", "to": "REQUESTED",
        "timer": {"id": "odd", "kind": "deadline", "step": "PICKUP", "stage": "X", "due_at": 5},
    }  # fmt: skip
    row = stored._history_row(entry)
    assert row[-1]["timer"] == entry["timer"]
