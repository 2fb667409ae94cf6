"""The saga's risk step: a decision before any money moves, acted on once; held returns wait
for a reviewer and go to a person when nobody decides; declines and denials end with a
reason and a ticket."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from services.decisions.saga import Status, decide
from services.decisions.saga.state import SagaConfig
from services.eventing.avro_codec import AvroCodec
from services.eventing.schema_catalogue import SchemaCatalogue
from tests.support.return_events import event

CODEC = AvroCodec(SchemaCatalogue.load())
RID = "RMA-RISK-1"
CONFIG = SagaConfig(risk_step=1)
NOW = itertools.count(1_800_000_000_000, 10)
TO_INTAKE = [
    "ReturnRequested",
    "ReturnAccepted",
    "PickupScheduled",
    "PickupCompleted",
    "InspectionRecorded",
    "IntakeCompleted",
]
MONEY = {"RefundRequested", "RefundReservationRequested", "ReplacementOrderRequested"}


def feed(state, name, config=CONFIG, **fields):
    transition = decide(state, name, event(name, RID, **fields), next(NOW), config)
    for command_name, command in transition.commands:
        CODEC.encode(command_name, command)  # every command is a valid Avro record
    return transition


def after_intake():
    state, last = None, None
    for name in TO_INTAKE:
        last = feed(state, name)
        state = last.state
    return state, last


def names(transition):
    return [name for name, _ in transition.commands]


def test_intake_asks_for_a_decision_and_no_money_moves_before_it():
    state, last = after_intake()
    assert state.status == Status.RISK_PENDING
    assert names(last) == ["RiskCheckRequested"]
    check = last.commands[0][1]
    assert check["decision_id"] == f"{RID}-risk"
    assert check["buyer_id"] == state.request["buyer_id"]
    assert check["items"] == state.inspection["items"]
    assert state.timer["kind"] == "deadline"


def test_without_the_risk_step_intake_goes_straight_to_the_refund():
    state = None
    for name in TO_INTAKE:
        last = feed(state, name, SagaConfig())
        state = last.state
    assert state.status == Status.REFUND_PENDING


def test_approve_and_review_pay_and_keep_the_rules_that_fired():
    for outcome in ("approve", "review"):
        state, _ = after_intake()
        rules = [{"rule_id": "serial-returner", "score": 35, "inputs_json": '{"a": 1}'}]
        paid = feed(state, "RiskDecided", outcome=outcome, score=35, rules=rules)
        assert paid.state.status == Status.REFUND_PENDING
        assert names(paid) == ["RefundRequested"]
        assert paid.state.risk["outcome"] == outcome
        fired = [r for r in paid.state.rules_fired if r["step"] == "RISK"]
        assert fired == [
            {
                "rule_id": "risk:serial-returner",
                "facts": {"a": 1},
                "effect": f"score 35 towards {outcome}",
                "step": "RISK",
            }
        ]


def test_a_held_return_pays_nothing_until_approved_then_once():
    state, _ = after_intake()
    held = feed(state, "RiskDecided", outcome="hold", score=70, case_id="case-1")
    assert held.state.status == Status.HELD_FOR_REVIEW and not MONEY & set(names(held))
    # a replayed decision and the buyer's nudges move nothing
    again = feed(held.state, "RiskDecided", outcome="approve")
    assert again.state.status == Status.HELD_FOR_REVIEW and again.commands == ()
    approved = feed(held.state, "RiskReviewDecided", verdict="approve")
    assert approved.state.status == Status.REFUND_PENDING
    assert names(approved) == ["RefundRequested"]
    assert approved.state.risk["verdict"]["reviewer"] == "reviewer-1"
    twice = feed(approved.state, "RiskReviewDecided", verdict="approve")
    assert not MONEY & set(names(twice))


def test_a_denied_return_is_rejected_with_the_reviewers_reason_and_a_ticket():
    state, _ = after_intake()
    held = feed(state, "RiskDecided", outcome="hold", score=70, case_id="case-1")
    denied = feed(held.state, "RiskReviewDecided", verdict="deny", reason="brick in the box")
    assert denied.state.status == Status.REJECTED
    assert denied.state.outcome["failed_step"] == "RISK"
    assert "brick in the box" in denied.state.outcome["reason"]
    assert "reviewer-1" in denied.state.outcome["reason"]
    assert names(denied) == ["TicketOpened", "ReturnFailed"]
    assert denied.commands[0][1]["category"] == "review-denied"


def test_a_decline_rejects_with_the_buyer_facing_reason():
    state, _ = after_intake()
    reason = "the parcel did not contain the item returned"
    declined = feed(state, "RiskDecided", outcome="decline", score=140, reason=reason)
    assert declined.state.status == Status.REJECTED
    assert declined.state.outcome["reason"] == f"declined: {reason}"
    assert names(declined) == ["TicketOpened", "ReturnFailed"]
    assert declined.commands[0][1]["category"] == "risk-declined"


def test_a_held_return_past_its_deadline_goes_to_a_person_and_stays_held():
    state, _ = after_intake()
    held = feed(state, "RiskDecided", outcome="hold", score=70, case_id="case-1").state
    timer = held.timer
    overdue = feed(held, "SagaStepTimedOut", step="RISK", timer_id=timer["id"], deadline_at=1)
    assert overdue.state.status == Status.HELD_FOR_REVIEW
    assert names(overdue) == ["TicketOpened"]
    assert overdue.commands[0][1]["category"] == "review-overdue"
    assert not overdue.state.timer  # nothing fires again: the person decides


def test_an_unanswered_check_is_asked_again_and_a_person_told_once():
    state, _ = after_intake()
    tickets = 0
    for _ in range(CONFIG.max_tries + 3):
        fired = feed(
            state, "SagaStepTimedOut", step="RISK", timer_id=state.timer["id"], deadline_at=1
        )
        state = fired.state
        assert state.status == Status.RISK_PENDING
        assert "RiskCheckRequested" in names(fired)
        tickets += names(fired).count("TicketOpened")
    assert tickets == 1
    assert feed(state, "RiskDecided").state.status == Status.REFUND_PENDING


ANSWERS = st.lists(
    st.sampled_from(
        [
            ("RiskDecided", {"outcome": "approve"}),
            ("RiskDecided", {"outcome": "hold", "case_id": "c"}),
            ("RiskDecided", {"outcome": "decline", "reason": "no"}),
            ("RiskReviewDecided", {"verdict": "approve"}),
            ("RiskReviewDecided", {"verdict": "deny", "reason": "not the item"}),
        ]
    ),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(ANSWERS)
def test_whatever_the_answers_money_moves_at_most_once_and_only_after_a_yes(answers):
    state, _ = after_intake()
    money, said_yes = 0, False
    for name, fields in answers:
        transition = feed(state, name, **fields)
        sent = MONEY & set(names(transition))
        if sent:
            money += 1
            assert (
                said_yes
                or fields.get("outcome") in ("approve", "review")
                or (fields.get("verdict") == "approve")
            )
        said_yes = said_yes or bool(sent)
        state = transition.state
    assert money <= 1
