"""The saga transition function: every state × every event, duplicates, bounds, determinism,
and the split form the coordinator stores."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.decisions.saga import (
    CONSUMED_EVENTS,
    EVENT_RANK,
    PARKING_RANK,
    TERMINAL,
    SagaState,
    Status,
    decide,
    status_view,
    stored,
)
from services.decisions.saga.state import (
    DEFAULT_CONFIG,
    HISTORY_KEPT,
    PROCESSED_IDS_KEPT,
    SagaConfig,
)
from services.eventing.avro_codec import AvroCodec
from services.eventing.schema_catalogue import SchemaCatalogue
from tests.support.return_events import event

CODEC = AvroCodec(SchemaCatalogue.load())
RID = "RMA-SAGA-1"
NOW = itertools.count(1_800_000_000_000, 10)

HAPPY_PATH = [
    ("ReturnRequested", Status.REQUESTED, []),
    ("ReturnAccepted", Status.PICKUP_PENDING, ["PickupRequested"]),
    ("PickupScheduled", Status.PICKUP_SCHEDULED, []),
    ("PickupCompleted", Status.AWAITING_INSPECTION, []),
    ("InspectionRecorded", Status.INTAKE_PENDING, ["IntakeRequested"]),
    ("IntakeCompleted", Status.REFUND_PENDING, ["RefundRequested"]),
    ("RefundIssued", Status.COMPLETED, ["ReturnCompleted"]),
]

# The state changes the saga makes (default event fields); every other (status, event) pair
# is parked (an event of a later step) or ignored and recorded.
EXPECTED = {
    (Status.NEW, "ReturnRequested"): Status.REQUESTED,
    (Status.REQUESTED, "ReturnAccepted"): Status.PICKUP_PENDING,
    (Status.REQUESTED, "ReturnRejected"): Status.REJECTED,
    (Status.REQUESTED, "ReturnCancelled"): Status.CANCELLED,
    (Status.PICKUP_PENDING, "PickupScheduled"): Status.PICKUP_SCHEDULED,
    (Status.PICKUP_PENDING, "PickupAttemptFailed"): Status.PICKUP_PENDING,
    (Status.PICKUP_SCHEDULED, "PickupAttemptFailed"): Status.PICKUP_SCHEDULED,
    (Status.PICKUP_PENDING, "PickupCompleted"): Status.AWAITING_INSPECTION,
    (Status.PICKUP_SCHEDULED, "PickupCompleted"): Status.AWAITING_INSPECTION,
    (Status.PICKUP_PENDING, "ReturnCancelled"): Status.CANCELLING,
    (Status.PICKUP_SCHEDULED, "ReturnCancelled"): Status.CANCELLING,
    (Status.CANCELLING, "PickupCancelled"): Status.CANCELLED,
    (Status.CANCELLING, "PickupCompleted"): Status.CANCELLING,
    (Status.CANCELLING, "PickupScheduled"): Status.CANCELLING,
    (Status.AWAITING_INSPECTION, "InspectionRecorded"): Status.INTAKE_PENDING,
    (Status.AWAITING_INSPECTION, "PickupScheduled"): Status.AWAITING_INSPECTION,
    (Status.INTAKE_PENDING, "PickupScheduled"): Status.INTAKE_PENDING,
    (Status.REFUND_PENDING, "PickupScheduled"): Status.REFUND_PENDING,
    (Status.INTAKE_PENDING, "IntakeCompleted"): Status.REFUND_PENDING,  # no order snapshot
    (Status.RESERVING_REFUND, "RefundReserved"): Status.REFUND_PENDING,
    (Status.RESERVING_REFUND, "RefundReservationRefused"): Status.NEEDS_ATTENTION,
    (Status.RESERVING_REFUND, "PickupScheduled"): Status.RESERVING_REFUND,
    (Status.REFUND_PENDING, "RefundIssued"): Status.COMPLETED,
    (Status.REFUND_PENDING, "RefundFailed"): Status.COMPENSATING,
    (Status.COMPENSATING, "IntakeReversed"): Status.COMPENSATING,
    (Status.COMPENSATING, "RefundIssued"): Status.NEEDS_ATTENTION,
    (Status.COMPENSATING, "RefundSettled"): Status.NEEDS_ATTENTION,
    (Status.REFUND_PENDING, "RefundSettled"): Status.REFUND_PENDING,  # kept until answered
    (Status.AWAITING_BUYER_DETAILS, "BuyerDetailsProvided"): Status.REFUND_PENDING,
    (Status.EXCHANGE_PENDING, "ReplacementOrderPlaced"): Status.COMPLETED,
    (Status.EXCHANGE_PENDING, "ReplacementOutOfStock"): Status.REFUND_PENDING,
    # the risk step (on in the coordinator): the default decision approves, the default
    # verdict approves a held return; late pickup details are kept
    (Status.RISK_PENDING, "RiskDecided"): Status.REFUND_PENDING,
    (Status.HELD_FOR_REVIEW, "RiskReviewDecided"): Status.REFUND_PENDING,
    (Status.RISK_PENDING, "PickupScheduled"): Status.RISK_PENDING,
    (Status.HELD_FOR_REVIEW, "PickupScheduled"): Status.HELD_FOR_REVIEW,
    # a verdict on a return paid before it was reviewed is kept, the state stays
    **{
        (status, "RiskReviewDecided"): status
        for status in (
            Status.RESERVING_REFUND,
            Status.AWAITING_BUYER_DETAILS,
            Status.EXCHANGE_PENDING,
            Status.REFUND_PENDING,
        )
    },
    # a person's retry re-issues the current step's command (nothing to send while waiting
    # for the buyer, the warehouse or the policy); the state stays
    **{
        (status, "SagaRetryRequested"): status
        for status in (
            Status.PICKUP_PENDING,
            Status.PICKUP_SCHEDULED,
            Status.INTAKE_PENDING,
            Status.RESERVING_REFUND,
            Status.REFUND_PENDING,
            Status.EXCHANGE_PENDING,
            Status.CANCELLING,
            Status.COMPENSATING,
            Status.RISK_PENDING,
            Status.HELD_FOR_REVIEW,
        )
    },
    # a person's cancel: nothing booked → cancelled; booked → cancel the pickup; collected
    # or later → undo what was done, last first
    (Status.REQUESTED, "SagaCancelRequested"): Status.CANCELLED,
    (Status.PICKUP_PENDING, "SagaCancelRequested"): Status.CANCELLING,
    (Status.PICKUP_SCHEDULED, "SagaCancelRequested"): Status.CANCELLING,
    **{
        (status, "SagaCancelRequested"): Status.COMPENSATING
        for status in (
            Status.AWAITING_INSPECTION,
            Status.INTAKE_PENDING,
            Status.RESERVING_REFUND,
            Status.AWAITING_BUYER_DETAILS,
            Status.EXCHANGE_PENDING,
            Status.REFUND_PENDING,
            Status.RISK_PENDING,
            Status.HELD_FOR_REVIEW,
        )
    },
    # a person's decision on a return that needs attention (here: paid while compensating)
    (Status.NEEDS_ATTENTION, "SagaResumeRequested"): Status.COMPLETED,
    # a buyer's erasure request is noted in every status (applied once the return ended)
    **{(status, "PersonalDataErasureRequested"): status for status in Status},
    # a dispute: noted (refused, with the reason) in every status but a decided one with
    # something kept (tests/unit/test_saga_disputes.py); a rescan at the first station or a
    # ruling on another dispute is ignored; the dispute's refund retried
    **{(status, "DisputeRequested"): status for status in Status},
    (Status.COMPLETED, "DisputeRequested"): Status.COMPLETED,  # refunded in full: refused
    (Status.DISPUTE_REFUND_PENDING, "SagaRetryRequested"): Status.DISPUTE_REFUND_PENDING,
    # the buyer charged for a dearer variant: too late to cancel, the charge asked again
    (Status.EXCHANGE_CHARGING, "BuyerDetailsProvided"): Status.EXCHANGE_CHARGING,
    (Status.EXCHANGE_CHARGING, "SagaRetryRequested"): Status.EXCHANGE_CHARGING,
    # a pickup may move while it is booked (a request before the booking is refused with a
    # note); a move the carrier reports is recorded until the parcel is inspected
    (Status.PICKUP_PENDING, "DropOffChosen"): Status.PICKUP_PENDING,
    (Status.PICKUP_SCHEDULED, "DropOffChosen"): Status.PICKUP_SCHEDULED,
    **{
        (status, "DropOffBooked"): status
        for status in (
            Status.PICKUP_PENDING,
            Status.PICKUP_SCHEDULED,
            Status.CANCELLING,
            Status.AWAITING_INSPECTION,
        )
    },
    (Status.PICKUP_PENDING, "PickupWindowRequested"): Status.PICKUP_PENDING,
    (Status.PICKUP_SCHEDULED, "PickupWindowRequested"): Status.PICKUP_SCHEDULED,
    **{
        (status, "PickupRescheduled"): status
        for status in (
            Status.PICKUP_PENDING,
            Status.PICKUP_SCHEDULED,
            Status.CANCELLING,
            Status.AWAITING_INSPECTION,
        )
    },
    # the buyer's bank account is kept whenever it comes before the refund
    **{
        (status, "BuyerDetailsProvided"): status
        for status in (
            Status.REQUESTED,
            Status.PICKUP_PENDING,
            Status.PICKUP_SCHEDULED,
            Status.CANCELLING,
            Status.AWAITING_INSPECTION,
            Status.INTAKE_PENDING,
            Status.RESERVING_REFUND,
            Status.EXCHANGE_PENDING,
            Status.RISK_PENDING,
            Status.HELD_FOR_REVIEW,
        )
    },
}


RISK_STEP = SagaConfig(risk_step=1)


def run(names, state=None, config=DEFAULT_CONFIG):
    transitions = []
    for name in names:
        transition = decide(state, name, event(name, RID), next(NOW), config)
        transitions.append(transition)
        state = transition.state
    return state, transitions


def run_events(steps) -> SagaState:
    """Like `run`, with fields of some events overridden: [name or (name, fields)]."""
    state = None
    for step in steps:
        name, fields = (step, {}) if isinstance(step, str) else step
        state = decide(state, name, event(name, RID, **fields), next(NOW)).state
    return state


def state_in(status: Status) -> SagaState | None:
    """A saga brought into `status` through real events."""
    to_refund = [n for n, *_ in HAPPY_PATH[:6]]
    paths = {
        Status.NEW: [],
        Status.REJECTED: ["ReturnRequested", "ReturnRejected"],
        Status.CANCELLING: [
            "ReturnRequested",
            "ReturnAccepted",
            "PickupScheduled",
            "ReturnCancelled",
        ],
        Status.CANCELLED: [
            "ReturnRequested",
            "ReturnAccepted",
            "PickupScheduled",
            "ReturnCancelled",
            "PickupCancelled",
        ],
        Status.COMPENSATING: [*to_refund, "RefundFailed"],
        Status.COMPENSATED: [*to_refund, "RefundFailed", "IntakeReversed", "PickupCancelled"],
        Status.NEEDS_ATTENTION: [*to_refund, "RefundFailed", "RefundIssued"],
    }
    if status == Status.AWAITING_BUYER_DETAILS:  # a bank transfer without an account
        return run_events(
            [("ReturnRequested", {"payment_method": "BANK_TRANSFER"}), *to_refund[1:]]
        )
    if status == Status.RESERVING_REFUND:  # a return with its order as paid, after intake
        from tests.unit.test_saga_refund_plan import (
            ORDER_SNAPSHOT,
            accepted_return,
            intake_completed,
        )

        return intake_completed(accepted_return(order=ORDER_SNAPSHOT)).state
    if status == Status.RISK_PENDING:
        return run(to_refund, config=RISK_STEP)[0]
    if status == Status.HELD_FOR_REVIEW:
        state = run(to_refund, config=RISK_STEP)[0]
        held = event("RiskDecided", RID, outcome="hold", score=70, case_id="case-1")
        return decide(state, "RiskDecided", held, next(NOW), RISK_STEP).state
    if status == Status.EXCHANGE_CHARGING:  # a dearer variant the buyer pays for
        from tests.unit.test_exchange_variants import exchange

        return exchange("SKU-RED-XL", price=2499, pay=True, rid="RMA-CHARGING").state
    if status in (Status.DISPUTED, Status.DISPUTE_REFUND_PENDING):
        from tests.unit.test_saga_disputes import completed, dispute, reinspect

        state = dispute(completed(return_id=f"RMA-{status}")[0]).state
        if status == Status.DISPUTE_REFUND_PENDING:
            state = reinspect(state, ("B", "B", "B")).state
        assert state.status == status
        return state
    if status == Status.EXCHANGE_PENDING:
        exchange = {"resolution": "EXCHANGE", "exchange_sku": "SKU-RED-L"}
        return run_events([("ReturnRequested", exchange), *to_refund[1:]])
    if status not in paths:
        index = [s for _, s, _ in HAPPY_PATH].index(status)
        paths[status] = [n for n, *_ in HAPPY_PATH[: index + 1]]
    state, _ = run(paths[status])
    if state is not None:
        assert state.status == status
    return state


def test_happy_path_walks_every_step_and_issues_each_command_once():
    state = None
    for name, expected_status, expected_commands in HAPPY_PATH:
        transition = decide(state, name, event(name, RID), next(NOW))
        assert transition.state.status == expected_status, name
        assert [c for c, _ in transition.commands] == expected_commands, name
        state = transition.state
    assert state.terminal
    assert [h["event_type"] for h in state.history] == [n for n, *_ in HAPPY_PATH]
    assert state.refund["provider_refund_id"] == "RF-1"


@pytest.mark.parametrize(
    ("status", "name"),
    list(itertools.product(list(Status), sorted(CONSUMED_EVENTS))),
    ids=lambda v: str(v),
)
def test_every_state_and_every_event(status, name):
    before = state_in(status)
    incoming = event(name, RID)
    transition = decide(before, name, incoming, next(NOW))
    after = transition.state
    expected = EXPECTED.get((status, name))
    parks = (
        expected is None
        and status not in TERMINAL
        and EVENT_RANK.get(name, -1) > PARKING_RANK.get(status, 99)
    )
    if parks:
        assert not transition.ignored
        assert transition.commands == ()
        assert after.status == status
        assert after.parked[-1][1]["envelope"]["event_id"] == incoming["envelope"]["event_id"]
        assert after.history[-1]["parked"] is True
    elif expected is None:
        assert transition.ignored
        assert transition.commands == ()
        assert after.status == status
        assert after.history[-1]["ignored"] is True
        assert after.history[-1]["note"]  # says why
        if before is not None:
            assert after.request == before.request and after.refund == before.refund
    else:
        assert not transition.ignored
        assert after.status == expected
    for command_name, command in transition.commands:
        CODEC.encode(command_name, command)  # every command is a valid Avro record


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_terminal_states_ignore_everything_but_a_persons_decision(status):
    state = state_in(status)
    for name in sorted(CONSUMED_EVENTS):
        if (status, name) == (Status.NEEDS_ATTENTION, "SagaResumeRequested"):
            continue  # what needs attention waits for exactly this (tested above)
        transition = decide(state, name, event(name, RID), next(NOW))
        assert transition.state.status == status
        assert transition.commands == ()


def test_a_redelivered_event_changes_nothing():
    state, transitions = run(["ReturnRequested", "ReturnAccepted", "PickupScheduled"])
    replayed_id = transitions[1].state.last_event_id
    replay = event("ReturnAccepted", RID, envelope={"event_id": replayed_id})
    again = decide(state, "ReturnAccepted", replay, next(NOW))
    assert again.duplicate
    assert again.state == state
    assert again.commands == (), "an older event's commands are not re-emitted"


def test_redelivery_of_the_last_event_changes_nothing_and_sends_nothing_again():
    # no outbox: the engine stores a state only once the commands it led to are on the
    # broker, so a state that has seen the event has had its commands sent
    state, _ = run(["ReturnRequested"])
    accepted = event("ReturnAccepted", RID)
    first = decide(state, "ReturnAccepted", accepted, next(NOW))
    again = decide(first.state, "ReturnAccepted", accepted, next(NOW))
    assert again.duplicate and again.state == first.state
    assert first.commands and again.commands == ()


def test_the_ids_remembered_and_the_history_kept_are_bounded():
    state, _ = run(["ReturnRequested", "ReturnAccepted"])
    for number in range(PROCESSED_IDS_KEPT + HISTORY_KEPT):
        noise = event("PickupAttemptFailed", RID, envelope={"event_id": f"noise-{number}"})
        state = decide(state, "PickupAttemptFailed", noise, next(NOW)).state
    assert len(state.processed_event_ids) == PROCESSED_IDS_KEPT
    assert len(state.history) == HISTORY_KEPT
    assert state.processed_event_ids[-1] == f"noise-{PROCESSED_IDS_KEPT + HISTORY_KEPT - 1}"


def test_command_ids_are_derived_from_the_return_and_the_step():
    def refund_command():
        _state, transitions = run([n for n, *_ in HAPPY_PATH[:6]])
        return transitions[-1].commands[0][1]

    first, second = refund_command(), refund_command()
    assert first["envelope"]["event_id"] == second["envelope"]["event_id"]
    assert first["idempotency_key"] == f"{RID}-refund-1"
    pending = replace(state_in(Status.INTAKE_PENDING), return_id="RMA-OTHER")
    other = decide(pending, "IntakeCompleted", event("IntakeCompleted", "RMA-OTHER"), next(NOW))
    assert other.commands[0][1]["envelope"]["event_id"] != first["envelope"]["event_id"]


def test_commands_carry_correlation_and_causation():
    state, transitions = run(["ReturnRequested", "ReturnAccepted"])
    [(_, pickup)] = transitions[1].commands
    requested_envelope = transitions[0].state.history[0]
    assert pickup["envelope"]["causation_id"] == transitions[1].state.last_event_id
    assert pickup["envelope"]["correlation_id"] == state.correlation_id
    assert requested_envelope["event_id"] in state.processed_event_ids
    assert pickup["idempotency_key"] == f"{RID}-pickup"


def test_refund_is_unit_price_times_quantity_in_minor_units():
    _state, transitions = run([n for n, *_ in HAPPY_PATH[:6]])
    [(_, refund)] = transitions[-1].commands
    assert refund["amount"] == {"amount_minor": 2 * 1999 + 500, "currency": "EUR"}
    assert [line["amount"]["amount_minor"] for line in refund["lines"]] == [3998, 500]
    assert refund["method"] == "CARD"


def test_rejection_ends_the_saga_with_a_reason():
    state, transitions = run(["ReturnRequested", "ReturnRejected"])
    assert state.status == Status.REJECTED
    [(name, failed)] = transitions[-1].commands
    assert name == "ReturnFailed" and failed["outcome"] == "REJECTED"
    assert "OUTSIDE_WINDOW" in state.outcome["reason"]


def test_needs_attention_opens_a_ticket():
    state = state_in(Status.NEEDS_ATTENTION)
    last = state.history[-1]
    assert [c["command"] for c in last["commands"]] == ["TicketOpened", "ReturnFailed"]
    assert state.outcome["ticket_id"]


def test_pickup_callback_overtaking_the_booking_is_accepted():
    state, _ = run(["ReturnRequested", "ReturnAccepted", "PickupCompleted", "PickupScheduled"])
    assert state.status == Status.AWAITING_INSPECTION
    assert state.pickup["carrier"] == "double-express"


def test_failed_pickup_attempts_are_recorded():
    state, _ = run(["ReturnRequested", "ReturnAccepted", "PickupScheduled", "PickupAttemptFailed"])
    assert state.pickup["failed_attempts"] == [{"attempt_no": 1, "reason": "BUYER_ABSENT"}]


def test_state_round_trips_through_json():
    parked, _ = run(["ReturnRequested", "ReturnAccepted", "InspectionRecorded"])
    assert SagaState.from_json(parked.to_json()) == parked
    state, _ = run([n for n, *_ in HAPPY_PATH])
    assert SagaState.from_json(state.to_json()) == state
    view = status_view(state)
    assert view["status"] == "COMPLETED" and len(view["history"]) == len(HAPPY_PATH)


def test_an_inspection_that_overtakes_the_pickup_confirmation_waits_for_it():
    state, transitions = run(
        ["ReturnRequested", "ReturnAccepted", "PickupScheduled", "InspectionRecorded"]
    )
    assert state.status == Status.PICKUP_SCHEDULED
    assert transitions[-1].commands == ()
    completed = decide(state, "PickupCompleted", event("PickupCompleted", RID), next(NOW))
    assert completed.state.status == Status.INTAKE_PENDING
    assert [name for name, _ in completed.commands] == ["IntakeRequested"]
    assert completed.state.parked == ()
    assert "applied now" in completed.state.history[-1]["note"]


def test_several_early_events_are_applied_in_step_order():
    state, _ = run(["ReturnRequested", "ReturnAccepted", "IntakeCompleted", "InspectionRecorded"])
    assert state.status == Status.PICKUP_PENDING and len(state.parked) == 2
    done = decide(state, "PickupCompleted", event("PickupCompleted", RID), next(NOW))
    assert done.state.status == Status.REFUND_PENDING
    assert [name for name, _ in done.commands] == ["IntakeRequested", "RefundRequested"]
    again = decide(
        done.state,
        "PickupCompleted",
        event("PickupCompleted", RID, envelope={"event_id": done.state.last_event_id}),
        next(NOW),
    )
    assert again.duplicate and again.commands == ()


def test_a_parked_event_delivered_twice_is_a_duplicate():
    state, _transitions = run(["ReturnRequested", "ReturnAccepted"])
    early = event("InspectionRecorded", RID)
    parked = decide(state, "InspectionRecorded", early, next(NOW)).state
    again = decide(parked, "InspectionRecorded", early, next(NOW))
    assert again.duplicate and len(again.state.parked) == 1


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(sorted(CONSUMED_EVENTS - {"SagaResumeRequested"})), min_size=1, max_size=14
    )
)
@example(["PickupScheduled", "PickupCompleted", "InspectionRecorded", "IntakeCompleted"])
@example([name for name, *_ in HAPPY_PATH[2:]])
def test_the_split_stored_form_decides_and_shows_exactly_what_the_whole_state_would(names):
    """The coordinator stores each saga as a slim record and its explanation
    (saga/stored.py): deciding from the slim record gives the same commands and state, and
    the two put back show the same view, for any order of events."""
    names = ["ReturnRequested", "ReturnAccepted", *names]
    whole: SagaState | None = None
    slim: dict | None = None
    explanation: dict | None = None
    clock = itertools.count(1_800_000_000_000, 10)
    for number, name in enumerate(names):
        record = event(name, RID, envelope={"event_id": f"E-{number}"})
        now = next(clock)
        full = decide(whole, name, record, now)
        loaded = stored.loaded_state(slim) if slim else None
        split = decide(loaded, name, record, now)
        assert split.commands == full.commands and split.duplicate == full.duplicate
        whole = full.state
        if not split.duplicate:
            slim = stored.slim_record(split.state)
            explanation = stored.explanation_after(explanation, loaded, split.state)
        assert stored.slim_record(whole) == slim
    assert status_view(stored.shown_state(slim, explanation)) == status_view(whole)


def test_bank_details_that_overtake_the_request_wait_for_it_and_are_kept():
    """The buyer's details come on saga.events, the request on returns.events (paused while
    the coordinator is busy): details may arrive before the saga knows the return."""
    state, _ = run(["BuyerDetailsProvided"])
    assert state.status == Status.NEW and len(state.parked) == 1
    state, _ = run(["ReturnRequested", "ReturnAccepted"], state)
    assert state.status == Status.PICKUP_PENDING and state.parked == ()
    provided = event("BuyerDetailsProvided", RID)["refund_account"]
    assert state.request["refund_account"] == provided
