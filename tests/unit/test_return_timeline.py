"""A return's timeline from the coordinator's view: its events in order, each rule at the
event that decided its step, the risk decision at its time, the money that moved."""

from __future__ import annotations

from services.decisions.after_sales.return_timeline import return_timeline, shown_amount

VIEW = {
    "return_id": "RMA-1",
    "status": "COMPLETED",
    "terminal": True,
    "outcome": {"outcome": "COMPLETED"},
    "request": {"order_ref": "ORD-1", "market": "DE", "buyer_id": "B-1", "unknown": "x"},
    "history": [
        {
            "at": 100,
            "event_type": "ReturnRequested",
            "from": "NEW",
            "to": "REQUESTED",
            "step": "REQUEST",
        },
        {
            "at": 200,
            "event_type": "ReturnAccepted",
            "from": "REQUESTED",
            "to": "PICKUP_PENDING",
            "step": "PICKUP",
            "commands": [{"command": "PickupRequested", "event_id": "e"}],
        },
        {
            "at": 300,
            "event_type": "PickupCompleted",
            "from": "PICKUP_PENDING",
            "to": "AWAITING_INSPECTION",
            "step": "INSPECTION",
        },
        {
            "at": 400,
            "event_type": "InspectionRecorded",
            "from": "AWAITING_INSPECTION",
            "to": "REFUND_PENDING",
            "step": "REFUND",
        },
        {
            "at": 600,
            "event_type": "RefundIssued",
            "from": "REFUND_PENDING",
            "to": "COMPLETED",
            "step": "REFUND",
        },
    ],
    "rules_fired": [
        {"rule_id": "policy.window", "facts": {"days": 3}, "effect": "inside", "step": "REQUEST"},
        {
            "rule_id": "liability.transit",
            "facts": {},
            "effect": "carrier pays",
            "step": "INSPECTION",
        },
        {"rule_id": "risk:velocity", "facts": {}, "effect": "score 10", "step": "RISK"},
    ],
    "risk": {"outcome": "approve", "score": 10, "rules": ["velocity"], "decided_at": 450},
    "refund": {
        "amount": {"amount_minor": 2599, "currency": "EUR"},
        "method": "CARD",
        "provider": "psp",
        "provider_refund_id": "RF-1",
        "status": "SUCCEEDED",
        "issued_at": 590,
    },
    "liability": {"liable": "CARRIER", "refund": "FULL"},
    "updated_at": 600,
}


def test_events_keep_their_order_and_rules_sit_at_the_event_that_decided_their_step():
    timeline = return_timeline(VIEW)
    shown = [(e["at"], e["kind"], e["title"]) for e in timeline["entries"]]
    assert [t for _, kind, t in shown if kind == "event"] == [
        "ReturnRequested",
        "ReturnAccepted",
        "PickupCompleted",
        "InspectionRecorded",
        "RefundIssued",
    ]
    assert (200, "rule", "Rule policy.window fired") in shown
    assert (400, "rule", "Rule liability.transit fired") in shown
    assert (450, "rule", "Rule risk:velocity fired") in shown
    assert (450, "risk", "Risk decision: approve") in shown
    assert (590, "money", "Refund issued by the provider") in shown
    assert shown[-1] == (600, "money", "Liable: CARRIER")
    assert [at for at, _, _ in shown] == sorted(at for at, _, _ in shown)


def test_the_money_reads_in_the_currencys_units_and_the_request_keeps_known_fields():
    timeline = return_timeline(VIEW)
    issued = next(e for e in timeline["entries"] if e["title"].startswith("Refund issued"))
    assert issued["detail"] == "25.99 EUR to CARD via psp (RF-1)"
    assert "unknown" not in timeline["request"] and timeline["request"]["buyer_id"] == "B-1"
    assert shown_amount({"amount_minor": 1500, "currency": "JPY"}) == "1500 JPY"
    assert shown_amount({"amount_minor": 1, "currency": "XXX"}) == ""


def test_a_saga_with_nothing_but_a_request_has_one_entry():
    timeline = return_timeline({"return_id": "RMA-2", "history": VIEW["history"][:1]})
    assert [e["title"] for e in timeline["entries"]] == ["ReturnRequested"]
