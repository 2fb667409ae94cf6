"""The coordinator's handlers around the pure saga, over an in-memory sagas table (no
broker, no HTTP)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from services.coordinator import handlers
from services.coordinator.handlers import REFIRE_AFTER_MS, CoordinatorPorts
from services.decisions.saga import SagaConfig, Status, changed
from services.decisions.saga import stored as stored_saga
from services.engine.due_timers import DueTimers
from services.eventing.handler_contract import HttpRequest, Incoming, TransientFailure
from tests.support.in_memory_loop import PublishedPolicies
from tests.support.return_events import event

RID = "RMA-COORD-1"


class Clock:
    def __init__(self, now_ms: int = 1_790_000_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def ports(clock: Clock | None = None) -> CoordinatorPorts:
    return CoordinatorPorts({}, SagaConfig(booking_deadline_ms=60_000), clock or Clock())


def drive(wired: CoordinatorPorts, name: str, record: dict[str, Any] | None = None) -> list:
    record = record or event(name, RID)
    return asyncio.run(handlers.drive_saga(wired, Incoming(name, record, RID.encode())))


def status(wired: CoordinatorPorts) -> Any:
    return asyncio.run(handlers.return_status(wired, HttpRequest(), RID))


def test_each_event_moves_the_stored_saga_and_a_redelivery_sends_nothing_again():
    wired = ports()
    assert drive(wired, "ReturnRequested") == []
    accepted = event("ReturnAccepted", RID)
    commands = drive(wired, "ReturnAccepted", accepted)
    assert [name for name, *_ in commands] == ["PickupRequested"]
    assert handlers.saga_of(wired.sagas[RID]).status == Status.PICKUP_PENDING
    # the engine stores no state before its commands are on the broker: they were sent
    assert drive(wired, "ReturnAccepted", accepted) == []
    view = status(wired)
    assert (view.status, view.body["status"]) == (200, Status.PICKUP_PENDING)


def test_the_stored_record_holds_what_later_steps_read_and_its_explanation_the_rest():
    wired = ports()
    drive(wired, "ReturnRequested")
    rule = {"rule_id": "policy.returnable", "facts_json": '{"category": "apparel"}'}
    drive(wired, "ReturnAccepted", event("ReturnAccepted", RID, rules=[rule | {"effect": "ok"}]))
    drive(wired, "PickupScheduled")
    record = wired.sagas[RID].stored_json()
    explanation = record.pop(stored_saga.EXPLANATION)
    slim = record
    assert "history" not in slim and "outbox" not in slim
    assert [r["step"] for r in explanation["rules_fired"]] == ["REQUEST"]
    assert slim["rules_fired"] == []  # the request's rules are not read again
    view = status(wired).body
    assert [e["event_type"] for e in view["history"]] == [
        "ReturnRequested",
        "ReturnAccepted",
        "PickupScheduled",
    ]
    assert view["history"][1]["commands"][0]["command"] == "PickupRequested"
    assert view["history"][1]["step"] == "PICKUP"
    assert view["rules_fired"] == explanation["rules_fired"]
    # the record as read back from the changelog shows the same, and the explanation grows
    live = wired.sagas[RID]
    wired.sagas[RID] = json.loads(json.dumps(live.stored_json()))
    assert status(wired).body == view
    assert handlers.saga_of(wired.sagas[RID]).status == live.state.status
    drive(wired, "PickupCompleted")
    assert [e["event_type"] for e in status(wired).body["history"]][-2:] == [
        "PickupScheduled",
        "PickupCompleted",
    ]


def test_a_due_timer_fires_once_until_it_is_overdue_for_refiring():
    clock = Clock()
    wired = ports(clock)
    drive(wired, "ReturnRequested")
    drive(wired, "ReturnAccepted")
    assert handlers.due_timer_events(wired) == []
    clock.now_ms += 60_001
    [(name, record)] = handlers.due_timer_events(wired)
    assert (name, record["step"]) == ("SagaStepTimedOut", "PICKUP")
    assert handlers.due_timer_events(wired) == []
    clock.now_ms += REFIRE_AFTER_MS
    [(_, again)] = handlers.due_timer_events(wired)
    assert again["envelope"]["event_id"] == record["envelope"]["event_id"]
    drive(wired, "SagaStepTimedOut", record)
    assert handlers.saga_of(wired.sagas[RID]).tries  # retried: the pickup is asked again


def test_a_saga_recovered_from_the_changelog_fires_its_due_timer_after_the_reload():
    clock = Clock()
    source = ports(clock)
    drive(source, "ReturnRequested")
    drive(source, "ReturnAccepted")
    reloads = [0]
    recovered = CoordinatorPorts(
        {},
        source.config,
        clock,
        timers=DueTimers(reloads=lambda: reloads[0]),
    )
    assert handlers.due_timer_events(recovered) == []  # nothing there yet
    recovered.sagas[RID] = json.loads(json.dumps(source.sagas[RID].stored_json()))
    reloads[0] += 1  # as StateStore.restored() does
    clock.now_ms += 60_001
    [(name, record)] = handlers.due_timer_events(recovered)
    assert (name, record["step"]) == ("SagaStepTimedOut", "PICKUP")


def test_a_saga_that_cannot_be_read_does_not_stop_the_other_timers():
    clock = Clock()
    wired = ports(clock)
    drive(wired, "ReturnRequested")
    drive(wired, "ReturnAccepted")
    assert handlers.due_timer_events(wired) == []  # the index is built
    wired.sagas["RMA-BROKEN"] = {"status": "PICKUP_SCHEDULED"}  # no fields a step reads
    wired.timers.note("RMA-BROKEN", clock.now_ms)
    clock.now_ms += 60_001
    [(_, record)] = handlers.due_timer_events(wired)
    assert record["envelope"]["return_id"] == RID
    assert len(wired.timers) == 2  # both noted again: RID's refire, the broken one's retry


def test_order_ledger_commands_are_keyed_by_the_order_not_the_return():
    command = ("RefundReservationRequested", {"order_ref": "ORD-7", "envelope": {}})
    assert handlers.keyed(command) == (*command, b"ORD-7")
    assert handlers.keyed(("PickupRequested", {})) == ("PickupRequested", {})


def test_the_status_pages_answer_404_for_an_unknown_return_and_count_by_status():
    wired = ports()
    assert status(wired).status == 404
    drive(wired, "ReturnRequested")
    listing = asyncio.run(
        handlers.list_returns(wired, HttpRequest(query={"status": "REQUESTED"}))
    ).body
    assert listing == {"counts": {"REQUESTED": 1}, "return_ids": [RID]}


def test_a_coordinator_recovered_from_its_changelog_goes_on_as_the_live_one_would():
    names = ["ReturnRequested", "ReturnAccepted", "PickupScheduled", "PickupCompleted"]
    live, recovered = ports(), ports()
    for number, name in enumerate(names):
        record = event(name, RID, envelope={"event_id": f"E-{number}"})
        assert drive(live, name, record) == drive(recovered, name, record)
        # the recovered one starts every event from what its changelogs would hold
        recovered.sagas[RID] = json.loads(json.dumps(recovered.sagas[RID].stored_json()))
    assert live.sagas[RID].stored_json() == recovered.sagas[RID]
    assert status(live).body == status(recovered).body


def test_a_return_naming_its_policy_by_digest_is_decided_with_the_published_policy():
    """ReturnAccepted v4 names the policy (policy_digest); the coordinator reads it from the
    snapshots table and the saga decides as with the policy on the record. A digest nobody
    published is a transient failure (retried, then dead-lettered with the reason)."""
    policy_json = json.dumps({"rules": {"decline_fallback": "STORE_CREDIT"}, "version": "p@v1"})
    carried = {**event("ReturnAccepted", RID), "policy_json": policy_json}
    named = {**carried, "policy_json": None, "policy_digest": "d-1"}
    requested = event("ReturnRequested", RID)

    with_policy_on_record = ports()
    drive(with_policy_on_record, "ReturnRequested", requested)
    drive(with_policy_on_record, "ReturnAccepted", carried)

    published = PublishedPolicies({"d-1": policy_json})
    by_digest = CoordinatorPorts({}, SagaConfig(booking_deadline_ms=60_000), Clock())
    by_digest.policies = published
    drive(by_digest, "ReturnRequested", requested)
    drive(by_digest, "ReturnAccepted", named)
    decided = handlers.saga_of(by_digest.sagas[RID])
    assert decided.request["policy_digest"] == "d-1"  # kept: a dispute reads it again
    without_digest = {k: v for k, v in decided.request.items() if k != "policy_digest"}
    assert changed(decided, request=without_digest) == handlers.saga_of(
        with_policy_on_record.sagas[RID]
    )
    assert decided.policy == json.loads(policy_json)

    nothing_published = ports()
    drive(nothing_published, "ReturnRequested")
    with pytest.raises(TransientFailure, match="d-1"):
        drive(nothing_published, "ReturnAccepted", named)
    assert handlers.saga_of(nothing_published.sagas[RID]).status == Status.REQUESTED
