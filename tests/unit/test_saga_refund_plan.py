"""The saga asks for the refund the policy it was accepted under decides: liability from the
claimed reason, the carrier's note and the inspection; fees; the breakdown per line."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from typing import Any

from services.decisions.refunds import order_refund_ledger
from services.decisions.saga import DEFAULT_CONFIG, SagaState, Status, decide, status_view
from services.eventing.avro_codec import AvroCodec
from services.eventing.envelope import reply_record
from services.eventing.schema_catalogue import SchemaCatalogue
from services.returns.return_policy import decide_return
from services.tools.local_stack.drawn_returns import request_of
from tests.support.policies import deployed_policies
from tests.support.return_events import event, inspected_item, return_request_body

CODEC = AvroCodec(SchemaCatalogue.load())
RID = "RMA-PLAN-1"
NOW = itertools.count(1_790_000_000_000, 10)
DE_RETURN_SHIPPING = 495  # deploy/policies/DE/market.yaml
ORDER_SNAPSHOT = {
    "currency": "EUR",
    "discount_minor": 1000,
    "lines": [
        {"line_id": "L1", "sku": "SKU-RED-M", "unit_price_minor": 1999, "quantity": 3},
        {"line_id": "L2", "sku": "SKU-CAP", "unit_price_minor": 500, "quantity": 1},
    ],
}


def apply(state: SagaState | None, name: str, record: dict[str, Any]):
    transition = decide(state, name, record, next(NOW), DEFAULT_CONFIG)
    for command_name, command in transition.commands:
        CODEC.encode(command_name, command)  # every command is a valid record
    return transition


def accepted_return(
    policies=None, return_id: str = RID, with_order: bool = True, **overrides: Any
) -> SagaState:
    """Through the front door's real decision, then the saga up to awaiting inspection
    (`with_order=False`: a ReturnRequested of before the front door sent the order's
    figures, as older records on the topic are)."""
    request = request_of(return_request_body(**overrides))
    now = request.delivered_at_ms + 3 * 86_400_000
    decision = decide_return(policies or deployed_policies(), request, now)
    assert decision.accepted, decision.detail
    fields = request.event_fields()
    if not with_order:
        fields["order"] = None
    state = apply(None, "ReturnRequested", event("ReturnRequested", return_id, **fields)).state
    accepted = event(
        "ReturnAccepted",
        return_id,
        policy_version=decision.policy_version,
        rules_fired=list(decision.rules_fired),
        rules=decision.rule_records(),
        policy_json=decision.policy_json,
        reason_family=decision.reason_family,
    )
    state = apply(state, "ReturnAccepted", accepted).state
    state = apply(state, "PickupScheduled", event("PickupScheduled", return_id)).state
    return state


def item(sku: str = "SKU-RED-M", grade: str = "B") -> dict[str, Any]:
    return inspected_item(sku=sku, grade=grade)


def intake_completed(state: SagaState, grades=("B", "B", "B"), carrier_damage=False):
    rid = state.return_id
    state = apply(
        state, "PickupCompleted", event("PickupCompleted", rid, carrier_noted_damage=carrier_damage)
    ).state
    items = [item("SKU-RED-M", grades[0]), item("SKU-RED-M", grades[1]), item("SKU-CAP", grades[2])]
    inspected = apply(state, "InspectionRecorded", event("InspectionRecorded", rid, items=items))
    return apply(inspected.state, "IntakeCompleted", event("IntakeCompleted", rid))


def ledger_answer(transition, entry=None):
    """The order refund ledger's answer to the saga's reservation (the real pure ledger, as
    the refund service runs it) and the ledger entry after it."""
    [(name, command)] = transition.commands
    assert name == "RefundReservationRequested"
    entry, answer = order_refund_ledger.reserve(entry, command["envelope"]["return_id"], command)
    return reply_record(command, answer.name, answer.body, "refund"), entry


def refund_command(state: SagaState, grades=("B", "B", "B"), carrier_damage=False):
    """Through inspection, intake and the order refund ledger (a return reserves its share
    of the order first) to the saga's refund command."""
    done = intake_completed(state, grades, carrier_damage)
    if done.state.status == Status.RESERVING_REFUND:
        answer, _ = ledger_answer(done)
        done = apply(done.state, answer["envelope"]["event_type"], answer)
    return done


def the_refund(done) -> dict[str, Any]:
    [(name, command)] = done.commands
    assert name == "RefundRequested"
    return command


def test_buyer_remorse_pays_the_return_shipping_in_de():
    command = the_refund(refund_command(accepted_return()))
    assert command["amount"] == {
        "amount_minor": 2 * 1999 + 500 - DE_RETURN_SHIPPING,
        "currency": "EUR",
    }
    assert command["liable"] == "BUYER"
    assert sum(line["return_shipping_minor"] for line in command["breakdown"]) == 495
    assert (
        sum(line["amount"]["amount_minor"] for line in command["lines"])
        == (command["amount"]["amount_minor"])
    )
    assert [rule["rule_id"] for rule in command["rules"]] == [
        "liability.remorse",
        "policy.return_shipping",
        "policy.refund_deadline_days",
    ]


def test_a_defect_claim_on_an_item_graded_as_new_is_overturned_to_buyer_remorse():
    state = accepted_return(reason_code="DEFECTIVE")
    done = refund_command(state, grades=("A", "A", "A"))
    command = the_refund(done)
    assert command["liable"] == "BUYER"
    assert command["amount"]["amount_minor"] == 2 * 1999 + 500 - DE_RETURN_SHIPPING
    assert done.state.refund["liability"]["overturned"] is True


def test_a_real_defect_refunds_in_full_with_the_seller_liable():
    done = refund_command(accepted_return(reason_code="DEFECTIVE"), grades=("C", "B", "B"))
    command = the_refund(done)
    assert (command["liable"], command["amount"]["amount_minor"]) == ("SELLER", 2 * 1999 + 500)


def test_damage_the_carrier_noted_at_pickup_stays_with_the_buyer_not_the_carrier():
    # The parcel was already damaged when collected: not transit damage.
    done = refund_command(accepted_return(), grades=("D", "B", "B"), carrier_damage=True)
    command = the_refund(done)
    assert command["liable"] == "BUYER"
    assert sum(line["damage_deduction_minor"] for line in command["breakdown"]) > 0
    facts = [r for r in done.state.rules_fired if r["rule_id"].startswith("liability.")]
    assert facts[0]["facts"]["pickup_damage_noted"] is True


def test_a_remorse_return_damaged_by_the_buyer_is_reduced_by_the_de_deduction():
    command = the_refund(refund_command(accepted_return(), grades=("C", "B", "B")))
    deducted = sum(line["damage_deduction_minor"] for line in command["breakdown"])
    assert deducted > 0
    assert command["amount"]["amount_minor"] == (2 * 1999 + 500 - DE_RETURN_SHIPPING - deducted)


def test_an_order_level_voucher_is_shared_by_the_returned_lines():
    command = the_refund(
        refund_command(accepted_return(reason_code="DEFECTIVE", order=ORDER_SNAPSHOT))
    )
    discount = sum(line["discount_minor"] for line in command["breakdown"])
    assert 0 < discount < 1000  # one of the three L1 units stays with the buyer
    assert command["amount"]["amount_minor"] == 2 * 1999 + 500 - discount


def test_store_credit_chosen_by_the_buyer_is_where_the_money_goes():
    command = the_refund(refund_command(accepted_return(store_credit=True)))
    assert (command["method"], command["paid_with"]) == ("STORE_CREDIT", "CARD")


def test_the_refund_follows_the_policy_the_return_was_accepted_under():
    state = accepted_return()
    snapshot = dict(state.policy)
    changed = replace(
        state,
        policy={
            **snapshot,
            "rules": {**snapshot["rules"], "return_shipping": {"fee_minor": 0, "payer": {}}},
        },
    )
    assert the_refund(refund_command(state))["amount"]["amount_minor"] == 4003
    assert the_refund(refund_command(changed))["amount"]["amount_minor"] == 4498


def test_the_status_view_shows_the_rules_of_both_decisions_and_the_liability():
    done = refund_command(accepted_return())
    view = status_view(done.state)
    steps = {rule["step"] for rule in view["rules_fired"]}
    assert steps == {"REQUEST", "INSPECTION"}
    assert view["liability"]["liable"] == "BUYER"
    assert view["refund"]["breakdown"][0]["currency"] == "EUR"
    json.dumps(view)  # serialisable as it is served


def test_fees_that_eat_the_whole_refund_complete_without_a_payment():
    cap_line = return_request_body()["lines"][1]
    cheap = cap_line | {"unit_price": {"amount_minor": 300, "currency": "EUR"}}
    state = accepted_return(lines=[cheap])
    state = apply(state, "PickupCompleted", event("PickupCompleted", RID)).state
    inspected = apply(
        state, "InspectionRecorded", event("InspectionRecorded", RID, items=[item("SKU-CAP")])
    )
    reserving = apply(inspected.state, "IntakeCompleted", event("IntakeCompleted", RID))
    answer, _ = ledger_answer(reserving)
    assert answer["amount"]["amount_minor"] == 0
    done = apply(reserving.state, answer["envelope"]["event_type"], answer)
    assert [name for name, _ in done.commands] == ["ReturnCompleted"]
    assert done.state.status == Status.COMPLETED
    assert done.state.refund["status"] == "NOTHING_TO_PAY"


def test_packaging_damaged_on_arrival_with_a_clean_pickup_makes_the_carrier_liable():
    state = accepted_return()
    state = apply(state, "PickupCompleted", event("PickupCompleted", RID)).state
    items = [
        {**item("SKU-RED-M", "C"), "packaging_damaged": True},
        item("SKU-RED-M", "B"),
        item("SKU-CAP", "B"),
    ]
    inspected = apply(state, "InspectionRecorded", event("InspectionRecorded", RID, items=items))
    reserving = apply(inspected.state, "IntakeCompleted", event("IntakeCompleted", RID))
    answer, _ = ledger_answer(reserving)
    command = the_refund(apply(reserving.state, answer["envelope"]["event_type"], answer))
    assert command["liable"] == "CARRIER"
    assert command["amount"]["amount_minor"] == 2 * 1999 + 500  # the buyer pays no fees
    assert "liability.transit_damage" in [rule["rule_id"] for rule in command["rules"]]
