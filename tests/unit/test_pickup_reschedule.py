"""Moving a booked pickup: the saga's steps (pure), the front door's window, the carrier's
proposal in its callback."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest

from services.decisions.saga import decide
from services.decisions.saga.state import DEFAULT_CONFIG, SagaConfig, Status
from services.eventing.handler_contract import HttpRequest
from services.eventing.request_fields import ApiError
from services.pickup.callback_parsing import callback_event
from services.returns import handlers
from services.returns.return_request import parse_pickup_window
from tests.support.buyer_signin import bearer
from tests.support.return_events import event
from tests.unit.test_handlers_returns import NOW, create, ports

RID = "RMA-MOVE-1"
DAY_MS = 86_400_000


def booked(config: SagaConfig = DEFAULT_CONFIG):
    clock = itertools.count(1_800_000_000_000, 10)
    state = None
    for name in ("ReturnRequested", "ReturnAccepted", "PickupScheduled"):
        state = decide(state, name, event(name, RID), next(clock), config).state
    return state, clock


def window(n: int) -> dict:
    start = 1_800_100_000_000 + n * DAY_MS
    return {"window_start": start, "window_end": start + 4 * 3_600_000, "requested_by": "buyer"}


def ask(state, clock, n: int, config: SagaConfig = DEFAULT_CONFIG):
    fields = {"envelope": {"event_id": f"window-{n}"}, **window(n)}
    return decide(
        state,
        "PickupWindowRequested",
        event("PickupWindowRequested", RID, **fields),
        next(clock),
        config,
    )


def test_a_buyers_window_becomes_one_carrier_command_per_reschedule_and_is_bounded():
    config = SagaConfig(pickup_reschedule_limit=2)
    state, clock = booked(config)
    commands = []
    for n in range(1, 4):
        transition = ask(state, clock, n, config)
        state = transition.state
        commands += transition.commands
    assert [name for name, _ in commands] == ["PickupRescheduleRequested"] * 2
    assert [c["reschedule_no"] for _, c in commands] == [1, 2]
    assert [c["idempotency_key"] for _, c in commands] == [
        f"{RID}-pickup-reschedule-1",
        f"{RID}-pickup-reschedule-2",
    ]
    assert commands[0][1]["booking_id"] == state.pickup["booking_id"]
    assert (state.pickup["reschedules_asked"], state.pickup["reschedules_refused"]) == (2, 1)
    assert "refused: 2 of 2 already asked" in state.history[-1]["note"]
    again = ask(state, clock, 3, config)  # the same request redelivered: nothing new
    assert again.duplicate and again.commands == ()


def test_a_move_sets_the_window_and_runs_the_collection_deadline_from_it():
    state, clock = booked()
    state = ask(state, clock, 1).state
    moved = {"envelope": {"event_id": "moved-1"}, **window(1), "reschedule_no": 1}
    now = next(clock)
    after = decide(state, "PickupRescheduled", event("PickupRescheduled", RID, **moved), now)
    pickup = after.state.pickup
    assert (pickup["window_start"], pickup["reschedules"]) == (window(1)["window_start"], 1)
    assert after.state.status == Status.PICKUP_SCHEDULED
    assert after.state.timer["due_at"] == now + SagaConfig().collection_deadline_ms
    refused = {"envelope": {"event_id": "refused-2"}, "outcome": "refused", "detail": "collected"}
    kept = decide(after.state, "PickupRescheduled", event("PickupRescheduled", RID, **refused), now)
    assert kept.state.pickup["window_start"] == window(1)["window_start"]
    assert kept.state.pickup["reschedules_refused"] == 1


def test_a_window_before_the_booking_is_refused_with_a_note():
    clock = itertools.count(1_800_000_000_000, 10)
    state = None
    for name in ("ReturnRequested", "ReturnAccepted"):
        state = decide(state, name, event(name, RID), next(clock)).state
    transition = ask(state, clock, 1)
    assert transition.commands == () and transition.state.status == Status.PICKUP_PENDING
    assert "no booking to move yet" in transition.state.history[-1]["note"]


HOUR = 3_600_000


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        ("2026-09-21T13:00:00Z", "2026-09-21T17:00:00Z", "window_start"),  # too soon
        ("2026-10-30T09:00:00Z", "2026-10-30T13:00:00Z", "window_start"),  # too far
        ("2026-09-22T09:00:00Z", "2026-09-22T09:30:00Z", "window_end"),  # too short
        ("2026-09-22T09:00:00Z", "2026-09-22T19:00:00Z", "window_end"),  # too long
        ("2026-09-22T09:00:00", "2026-09-22T13:00:00Z", "window_start"),  # no offset
        ("tomorrow", "2026-09-22T13:00:00Z", "window_start"),
    ],
)
def test_a_window_outside_the_terms_is_422_naming_the_field(start, end, field):
    now = 1_790_000_000_000 + 11 * HOUR  # 2026-09-21T12:53:20Z
    with pytest.raises(ApiError) as refused:
        parse_pickup_window({"window_start": start, "window_end": end}, now)
    assert refused.value.status == 422
    assert field in {f.field for f in refused.value.fields}


def test_the_front_door_takes_the_returns_buyers_window_once_per_window():
    wired = ports()
    return_id = create(wired).body["return_id"]
    body = json.dumps(
        {"window_start": "2026-09-23T09:00:00Z", "window_end": "2026-09-23T13:00:00+00:00"}
    )
    mine = HttpRequest(body.encode(), bearer("B-1", NOW))
    first = asyncio.run(handlers.move_pickup(wired, mine, return_id))
    again = asyncio.run(handlers.move_pickup(wired, mine, return_id))
    assert first.status == again.status == 202
    assert first.body["event_id"] == again.body["event_id"]
    name, record = wired.publish.records[-1][:2]
    assert name == "PickupWindowRequested" and record["requested_by"] == "buyer"
    assert record["window_end"] - record["window_start"] == 4 * HOUR
    other = HttpRequest(body.encode(), bearer("B-OTHER", NOW))
    with pytest.raises(ApiError) as refused:
        asyncio.run(handlers.move_pickup(wired, other, return_id))
    assert (refused.value.status, refused.value.code) == (403, "not_your_return")


def test_the_carrier_proposing_a_window_is_a_pickup_rescheduled():
    body = {
        "callback_id": "cb-9",
        "return_id": RID,
        "booking_id": "BK-1",
        "tracking_number": "T-1",
        "status": "rescheduled",
        "occurred_at": 1,
        "attempt_no": 1,
        "window_start": 1_800_100_000_000,
        "window_end": 1_800_100_000_000 + 4 * HOUR,
    }
    name, record = callback_event(body, "pickup")
    assert name == "PickupRescheduled"
    assert (record["proposed_by"], record["outcome"], record["reschedule_no"]) == (
        "carrier",
        "rescheduled",
        0,
    )
    with pytest.raises(ApiError) as refused:
        callback_event({**body, "window_end": None}, "pickup")
    assert {f.field for f in refused.value.fields} == {"window_end"}


def choose(state, clock, point: str = "DP-BER-1"):
    fields = {"envelope": {"event_id": f"drop-{point}"}, "point_id": point}
    record = event("DropOffChosen", RID, **fields)
    return decide(state, "DropOffChosen", record, next(clock))


def test_a_booked_pickup_becomes_a_drop_off_once():
    state, clock = booked()
    first = choose(state, clock)
    [(name, command)] = first.commands
    assert name == "DropOffRequested"
    assert (command["point_id"], command["idempotency_key"]) == ("DP-BER-1", f"{RID}-drop-off")
    second = choose(first.state, clock, "DP-BER-2")
    assert second.commands == () and "already asked" in second.state.history[-1]["note"]
    now = next(clock)
    fields = {"envelope": {"event_id": "dropped-1"}, "drop_off_code": "DO-7"}
    done = decide(second.state, "DropOffBooked", event("DropOffBooked", RID, **fields), now)
    assert done.state.pickup["drop_off"] == {"point_id": "DP-BER-1", "code": "DO-7"}
    assert done.state.timer["due_at"] == now + SagaConfig().collection_deadline_ms
