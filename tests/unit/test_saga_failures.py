"""The saga's failure paths: retries, timers, cancellation, compensation order, the pivot."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from services.coordinator.saga_settings import saga_config_from_env
from services.decisions.saga import (
    DEFAULT_CONFIG,
    SagaConfig,
    SagaState,
    Status,
    backoff_ms,
    decide,
    due_timer,
)
from services.eventing.avro_codec import AvroCodec
from services.eventing.schema_catalogue import SchemaCatalogue
from tests.support.return_events import event, inspected_item

CODEC = AvroCodec(SchemaCatalogue.load())
RID = "RMA-FAIL-1"
NOW = itertools.count(1_800_000_000_000, 10)
CONFIG = SagaConfig(max_tries=3, backoff_base_ms=100, backoff_cap_ms=1000, pickup_attempt_limit=2)

TO_REFUND = [
    "ReturnRequested",
    "ReturnAccepted",
    "PickupScheduled",
    "PickupCompleted",
    "InspectionRecorded",
    "IntakeCompleted",
]


def apply(state, name, fields=None, config=CONFIG, **more):
    fields = {**(fields or {}), **more}
    transition = decide(state, name, event(name, RID, **fields), next(NOW), config)
    for command_name, command in transition.commands:
        CODEC.encode(command_name, command)
    return transition


def run(names, state=None, config=CONFIG):
    transitions = []
    for item in names:
        name, fields = (item, {}) if isinstance(item, str) else item
        transition = apply(state, name, fields, config)
        transitions.append(transition)
        state = transition.state
    return state, transitions


def fire(state, config=CONFIG):
    """What the coordinator's timer loop does when the saga's timer is due."""
    timer = due_timer(state, state.timer["due_at"])
    assert timer is not None
    return apply(
        state,
        "SagaStepTimedOut",
        None,
        config,
        step=timer["step"],
        timer_id=timer["id"],
        deadline_at=timer["due_at"],
    )


def commands(transition):
    return [name for name, _ in transition.commands]


def decline(retryable: bool, code: str = "do_not_honor"):
    return ("RefundFailed", {"retryable": retryable, "decline_code": code})


# ---------------------------------------------------------------- timers


def test_every_waiting_state_has_a_deadline_and_terminal_states_have_none():
    state, transitions = run([*TO_REFUND, "RefundIssued"])
    for transition in transitions[1:-1]:
        assert transition.state.timer, transition.state.status
        assert transition.state.timer["due_at"] > 0
    assert state.status == Status.COMPLETED and state.timer == {}


def test_a_due_timer_is_reported_only_when_due():
    state, _ = run(["ReturnRequested", "ReturnAccepted"])
    due = state.timer["due_at"]
    assert due_timer(state, due - 1) is None
    assert due_timer(state, due)["id"] == state.timer["id"]


def test_a_stale_timer_is_ignored():
    state, _ = run(["ReturnRequested", "ReturnAccepted"])
    old = state.timer
    state, _ = run(["PickupScheduled"], state)
    stale = apply(state, "SagaStepTimedOut", step="PICKUP", timer_id=old["id"], deadline_at=1)
    assert stale.ignored and stale.state.status == Status.PICKUP_SCHEDULED
    assert "stale timer" in stale.state.history[-1]["note"]


def test_timers_survive_a_restart_because_they_live_in_the_state():
    state, _ = run(["ReturnRequested", "ReturnAccepted", "PickupScheduled"])
    restored = SagaState.from_json(state.to_json())
    assert restored.timer == state.timer
    assert fire(restored).state.status == Status.CANCELLING


# ---------------------------------------------------------------- retries


def test_backoff_grows_exponentially_with_bounded_jitter_and_a_cap():
    config = SagaConfig(backoff_base_ms=1000, backoff_cap_ms=8000)
    for tries, base in [(1, 1000), (2, 2000), (3, 4000), (4, 8000), (9, 8000)]:
        delay = backoff_ms(config, RID, "REFUND_PENDING", tries)
        assert base // 2 <= delay <= base * 3 // 2
    assert backoff_ms(config, RID, "X", 3) == backoff_ms(config, RID, "X", 3)  # pure
    delays = {backoff_ms(config, f"RMA-{n}", "X", 1) for n in range(50)}
    assert len(delays) > 10, "jitter spreads retries of different returns"


def test_a_transient_refund_failure_is_retried_with_the_same_idempotency_key():
    state, transitions = run(TO_REFUND)
    first = transitions[-1].commands[0][1]
    failed = apply(state, *decline(True, "provider_unavailable"))
    assert failed.state.status == Status.REFUND_PENDING
    assert failed.state.timer["kind"] == "retry" and failed.commands == ()
    retried = fire(failed.state)
    [(name, again)] = retried.commands
    assert name == "RefundRequested"
    assert again["idempotency_key"] == first["idempotency_key"] == f"{RID}-refund-1"
    assert again["envelope"]["event_id"] != first["envelope"]["event_id"]
    assert again["envelope"]["attempt"] == 2


def test_transient_failures_are_bounded_then_the_saga_compensates():
    state, _ = run(TO_REFUND)
    for _ in range(CONFIG.max_tries - 1):
        state = apply(state, *decline(True, "timeout")).state
        assert state.status == Status.REFUND_PENDING
        state = fire(state).state
    last = apply(state, *decline(True, "timeout"))
    assert last.state.status == Status.COMPENSATING
    assert commands(last) == ["IntakeReverseRequested"]


def test_a_missed_refund_deadline_re_sends_the_command():
    state, _transitions = run(TO_REFUND)
    resent = fire(state)
    assert commands(resent) == ["RefundRequested"]
    assert resent.commands[0][1]["idempotency_key"] == f"{RID}-refund-1"
    assert resent.state.tries["REFUND_PENDING"] == 1


def test_carrier_errors_are_retried_then_the_return_is_cancelled():
    state, _ = run(["ReturnRequested", "ReturnAccepted"])
    carrier_error = ("PickupAttemptFailed", {"failure_reason": "CARRIER_ERROR", "attempt_no": 1})
    for _ in range(CONFIG.max_tries - 1):
        state = apply(state, *carrier_error).state
        assert state.timer["kind"] == "retry"
        retried = fire(state)
        assert commands(retried) == ["PickupRequested"]
        assert retried.commands[0][1]["idempotency_key"] == f"{RID}-pickup"
        state = retried.state
    final = apply(state, *carrier_error)
    assert final.state.status == Status.CANCELLED
    assert "carrier unavailable" in final.state.outcome["reason"]


def test_a_booking_error_after_the_pickup_was_scheduled_keeps_the_collection_deadline():
    """Chaos seed 101: a re-sent booking failed (503) after the first booking was confirmed;
    the saga set a retry timer for a step with nothing to send and was left without a timer."""
    state, _ = run(["ReturnRequested", "ReturnAccepted", "PickupScheduled"])
    deadline = state.timer
    carrier_error = ("PickupAttemptFailed", {"failure_reason": "CARRIER_ERROR", "attempt_no": 1})
    failed = apply(state, *carrier_error)
    assert failed.ignored and failed.commands == ()
    assert failed.state.status == Status.PICKUP_SCHEDULED
    assert failed.state.timer == deadline
    assert "already scheduled" in failed.state.history[-1]["note"]


def test_a_retry_timer_while_scheduled_waits_for_the_collection_again():
    state, _ = run(["ReturnRequested", "ReturnAccepted", "PickupScheduled"])
    stale = replace(state, timer={**state.timer, "kind": "retry", "id": "retry-old"})
    fired = fire(stale)
    assert fired.state.status == Status.PICKUP_SCHEDULED
    assert fired.state.timer and fired.state.timer["kind"] == "deadline"


def test_a_permanent_failure_is_not_retried():
    state, _ = run(TO_REFUND)
    declined = apply(state, *decline(False, "account_closed"))
    assert declined.state.status == Status.COMPENSATING
    assert "RefundRequested" not in commands(declined)
    assert declined.state.refund["status"] == "DECLINED"


# ---------------------------------------------------------------- pickup


def test_failed_attempts_at_the_door_are_rescheduled_up_to_the_limit_then_cancelled():
    state, _ = run(["ReturnRequested", "ReturnAccepted", "PickupScheduled"])
    absent = ("PickupAttemptFailed", {"failure_reason": "BUYER_ABSENT", "attempt_no": 1})
    once = apply(state, *absent)
    assert once.state.status == Status.PICKUP_SCHEDULED and once.commands == ()
    twice = apply(
        once.state, "PickupAttemptFailed", failure_reason="PARCEL_NOT_READY", attempt_no=2
    )
    assert twice.state.status == Status.CANCELLING
    [(name, cancel)] = twice.commands
    assert name == "PickupCancelRequested" and cancel["booking_id"] == "BK-1"
    done = apply(twice.state, "PickupCancelled")
    assert done.state.status == Status.CANCELLED
    assert "pickup failed 2 times" in done.state.outcome["reason"]
    assert commands(done) == ["ReturnFailed"]


def test_pickup_not_collected_in_time_is_cancelled():
    state, _ = run(["ReturnRequested", "ReturnAccepted", "PickupScheduled"])
    timed_out = fire(state)
    assert timed_out.state.status == Status.CANCELLING
    assert commands(timed_out) == ["PickupCancelRequested"]


def test_booking_never_confirmed_is_re_requested_then_cancelled():
    state, _ = run(["ReturnRequested", "ReturnAccepted"])
    for _ in range(CONFIG.max_tries - 1):
        state = fire(state).state
        assert state.status == Status.PICKUP_PENDING
    assert fire(state).state.status == Status.CANCELLED


# ---------------------------------------------------------------- buyer cancellation


def test_buyer_cancellation_before_pickup_cancels_the_pickup():
    state, _ = run(["ReturnRequested", "ReturnAccepted", "PickupScheduled", "ReturnCancelled"])
    assert state.status == Status.CANCELLING
    assert state.history[-1]["commands"][0]["command"] == "PickupCancelRequested"
    state, transitions = run(["PickupCancelled"], state)
    assert state.status == Status.CANCELLED
    assert transitions[-1].commands[0][1]["outcome"] == "CANCELLED"


def test_buyer_cancellation_before_acceptance_needs_no_carrier():
    state, transitions = run(["ReturnRequested", "ReturnCancelled"])
    assert state.status == Status.CANCELLED
    assert commands(transitions[-1]) == ["ReturnFailed"]


@pytest.mark.parametrize("at", ["PickupCompleted", "InspectionRecorded", "IntakeCompleted"])
def test_buyer_cancellation_after_collection_is_refused_and_recorded(at):
    path = TO_REFUND[: TO_REFUND.index(at) + 1]
    state, _ = run(path)
    refused = apply(state, "ReturnCancelled")
    assert refused.state.status == state.status
    assert refused.commands == ()
    assert "already been collected" in refused.state.history[-1]["note"]


def test_a_cancellation_the_carrier_could_not_honour_lets_the_return_go_on():
    state, _ = run(["ReturnRequested", "ReturnAccepted", "PickupScheduled", "ReturnCancelled"])
    state = apply(state, "PickupCompleted").state
    assert state.status == Status.CANCELLING
    answer = apply(state, "PickupCancelled", reason="not-cancelled: already collected")
    assert answer.state.status == Status.AWAITING_INSPECTION
    assert answer.state.timer["kind"] == "deadline"
    assert "return goes on" in answer.state.history[-1]["note"]


def test_a_refused_cancellation_before_the_collection_is_known_waits_for_the_scan():
    """Seen in a chaos run: waiting for the lost collection callback, then cancelling again,
    looped forever (the carrier repeats its first answer, which the saga had seen)."""
    state, _ = run(["ReturnRequested", "ReturnAccepted", "PickupScheduled", "ReturnCancelled"])
    answer = apply(state, "PickupCancelled", reason="not-cancelled: already collected")
    assert answer.state.status == Status.AWAITING_INSPECTION
    assert answer.state.timer["stage"] == "AWAITING_INSPECTION"
    assert "waiting for the warehouse scan" in answer.state.history[-1]["note"]
    late = apply(answer.state, "PickupCompleted")
    assert late.state.status == Status.AWAITING_INSPECTION
    assert late.state.pickup["collected_at"]
    assert apply(late.state, "InspectionRecorded").state.status == Status.INTAKE_PENDING


def test_a_scan_that_never_comes_after_a_refused_cancellation_ends_needing_attention():
    state, _ = run(["ReturnRequested", "ReturnAccepted", "PickupScheduled", "ReturnCancelled"])
    state = apply(state, "PickupCancelled", reason="not-cancelled: already collected").state
    assert fire(state).state.status == Status.NEEDS_ATTENTION


def test_an_inspection_that_overtakes_a_failed_cancellation_is_kept_and_applied():
    """Seen in a chaos run: the scan arrived while the saga was still cancelling; dropping
    it left the return waiting for an inspection that had already happened."""
    state, _ = run(["ReturnRequested", "ReturnAccepted", "PickupScheduled", "ReturnCancelled"])
    state = apply(state, "PickupCompleted").state
    kept = apply(state, "InspectionRecorded")
    assert kept.state.status == Status.CANCELLING
    assert kept.state.history[-1].get("parked") is True
    answer = apply(kept.state, "PickupCancelled", reason="not-cancelled: already collected")
    assert answer.state.status == Status.INTAKE_PENDING
    assert commands(answer) == ["IntakeRequested"]


def test_a_confirmed_cancellation_of_a_parcel_the_warehouse_inspected_needs_a_person():
    state, _ = run(["ReturnRequested", "ReturnAccepted", "PickupScheduled", "ReturnCancelled"])
    state = apply(state, "InspectionRecorded").state
    answer = apply(state, "PickupCancelled")
    assert answer.state.status == Status.NEEDS_ATTENTION
    assert "inspected at the warehouse" in answer.state.outcome["reason"]
    assert answer.state.parked == ()


# ---------------------------------------------------------------- inspection outcomes


@pytest.mark.parametrize(
    ("item", "words"),
    [
        (inspected_item(matches_order=False), "does not match"),
        (inspected_item(measured_weight_grams=20), "weight far below expected"),
    ],
    ids=["mismatch", "empty-box"],
)
def test_a_bad_inspection_quarantines_rejects_without_refund_and_opens_a_ticket(item, words):
    state, _ = run(TO_REFUND[:4])
    inspected = apply(state, "InspectionRecorded", items=[item])
    assert commands(inspected) == ["IntakeRequested"], "the item is taken in (to quarantine)"
    done = apply(inspected.state, "IntakeCompleted")
    assert done.state.status == Status.REJECTED
    assert commands(done) == ["TicketOpened", "ReturnFailed"]
    assert "RefundRequested" not in [
        c["command"] for h in done.state.history for c in h.get("commands", [])
    ]
    assert words in done.state.outcome["reason"]


def test_a_return_accepted_without_a_policy_snapshot_refunds_price_times_quantity_any_grade():
    # Events from before policies travelled with the return: the arithmetic of that time.
    state, _ = run(TO_REFUND[:4])
    inspected = apply(state, "InspectionRecorded", items=[inspected_item(grade="C")])
    done = apply(inspected.state, "IntakeCompleted")
    assert commands(done) == ["RefundRequested"]
    assert done.commands[0][1]["breakdown"] == []
    assert done.commands[0][1]["liable"] is None


def test_an_inspection_never_posted_needs_attention_after_the_deadline():
    state, _ = run(TO_REFUND[:4])
    late = fire(state)
    assert late.state.status == Status.NEEDS_ATTENTION
    assert commands(late) == ["TicketOpened", "ReturnFailed"]


# ---------------------------------------------------------------- compensation


def test_compensations_are_registered_before_their_steps_run():
    state, _ = run(TO_REFUND)
    assert state.compensations == ("cancel-pickup", "reverse-intake", "void-refund")


def test_a_declined_refund_compensates_in_reverse_order_and_records_each_step():
    state, _ = run(TO_REFUND)
    steps = []
    transition = apply(state, *decline(False))
    steps.append(commands(transition))
    transition = apply(transition.state, "IntakeReversed")
    steps.append(commands(transition))
    transition = apply(transition.state, "PickupCancelled", reason="not-cancelled: collected")
    steps.append(commands(transition))
    assert steps == [
        ["IntakeReverseRequested"],
        ["PickupCancelRequested"],
        ["TicketOpened", "ReturnFailed"],
    ]
    final = transition.state
    assert final.status == Status.COMPENSATED
    assert final.compensation["done"][0].startswith("void-refund (no pending refund")
    assert final.compensation["done"][1:] == ["reverse-intake", "cancel-pickup"]
    notes = " ".join(h.get("note", "") for h in final.history)
    assert "compensation reverse-intake confirmed" in notes
    assert "compensation cancel-pickup confirmed" in notes


def test_a_pending_refund_is_voided_first_when_it_does_not_settle():
    state, _ = run(TO_REFUND)
    pending = apply(state, "RefundIssued", status="PENDING")
    assert pending.state.status == Status.REFUND_PENDING
    early = fire(pending.state)  # another timer before the settlement deadline: waits on
    assert early.state.status == Status.REFUND_PENDING and early.commands == ()
    cap = pending.state.refund["pending_since"] + CONFIG.settlement_deadline_ms
    assert early.state.timer["due_at"] == cap
    timer = early.state.timer
    overdue = decide(
        early.state,
        "SagaStepTimedOut",
        event("SagaStepTimedOut", RID, step=timer["step"], timer_id=timer["id"]),
        cap,
        CONFIG,
    )
    assert overdue.state.status == Status.COMPENSATING
    [(name, void)] = overdue.commands
    assert name == "RefundVoidRequested" and void["provider_refund_id"] == "RF-1"
    voided = apply(overdue.state, "RefundVoided")
    assert commands(voided) == ["IntakeReverseRequested"]
    assert voided.state.refund["status"] == "VOIDED"


def test_an_unconfirmed_compensation_is_retried_then_needs_attention():
    state, _ = run(TO_REFUND)
    state = apply(state, *decline(False)).state
    for _ in range(CONFIG.max_tries - 1):
        retried = fire(state)
        assert commands(retried) == ["IntakeReverseRequested"]
        state = retried.state
    final = fire(state)
    assert final.state.status == Status.NEEDS_ATTENTION


def test_a_paid_refund_is_the_pivot_and_cannot_be_compensated():
    state, _ = run([*TO_REFUND, "RefundIssued"])
    assert state.status == Status.COMPLETED
    after = apply(state, *decline(False))
    assert after.ignored and after.state.status == Status.COMPLETED


def test_a_refund_paid_late_during_compensation_is_recovered_forward():
    state, _ = run(TO_REFUND)
    compensating = apply(state, *decline(True, "timeout"), config=SagaConfig(max_tries=1)).state
    assert compensating.status == Status.COMPENSATING
    late = apply(compensating, "RefundIssued", status="SUCCEEDED")
    assert late.state.status == Status.NEEDS_ATTENTION
    assert late.state.refund["status"] == "SUCCEEDED"


def test_default_config_is_sane():
    assert DEFAULT_CONFIG.max_tries >= 3
    env = {"SAGA_MAX_TRIES": "7", "SAGA_INSPECTION_DEADLINE_MS": "5"}
    # the coordinator asks the risk step unless told not to
    assert saga_config_from_env(env) == SagaConfig(
        max_tries=7, inspection_deadline_ms=5, risk_step=1
    )
    assert saga_config_from_env({"SAGA_RISK_STEP": "0"}).risk_step == 0
