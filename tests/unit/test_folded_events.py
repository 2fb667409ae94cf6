"""The front door's one record per request (a decision carrying its ReturnRequested): it
survives the codec, and every consumer takes it as the two events it stands for."""

from __future__ import annotations

import asyncio

from services.coordinator import handlers as coordinator
from services.decisions.folded_events import unfolded
from services.decisions.saga import SagaConfig
from services.eventing.avro_codec import AvroCodec
from services.eventing.handler_contract import Incoming
from services.eventing.schema_catalogue import SchemaCatalogue
from services.inspection.handlers import fold_return
from services.returns.handlers import fold_answer
from services.tools.oncall.replay_effects import APPLIED, NEW, predict
from tests.support.return_events import envelope, event

RID = "RMA-FOLDED-1"


def folded(decision: str = "ReturnAccepted") -> tuple[dict, dict]:
    requested = event("ReturnRequested", RID)
    outcome = event(decision, RID)
    outcome["envelope"] = envelope(decision, RID, causation_id=requested["envelope"]["event_id"])
    return requested, {**outcome, "requested": requested}


def test_a_decision_carrying_its_request_round_trips_and_unfolds_request_first():
    codec = AvroCodec(SchemaCatalogue.load())
    for decision in ("ReturnAccepted", "ReturnRejected"):
        requested, record = folded(decision)
        decoded = codec.decode(codec.encode(decision, record)).record
        (first, request), (second, outcome) = unfolded(decision, decoded)
        assert (first, second) == ("ReturnRequested", decision)
        assert request["envelope"] == requested["envelope"]
        assert "requested" not in outcome


def test_a_record_without_a_request_is_itself():
    accepted = event("ReturnAccepted", RID)
    assert unfolded("ReturnAccepted", accepted) == [("ReturnAccepted", accepted)]
    assert unfolded("ReturnAccepted", {**accepted, "requested": None})[0][0] == "ReturnAccepted"
    pickup = event("PickupScheduled", RID)
    assert unfolded("PickupScheduled", pickup) == [("PickupScheduled", pickup)]


def drive(wired: coordinator.CoordinatorPorts, name: str, record: dict) -> list:
    return asyncio.run(coordinator.drive_saga(wired, Incoming(name, record, RID.encode())))


def test_the_saga_moves_the_same_on_one_folded_record_as_on_the_two_events():
    requested, record = folded()
    accepted = {k: v for k, v in record.items() if k != "requested"}

    def wired() -> coordinator.CoordinatorPorts:
        config = SagaConfig(booking_deadline_ms=60_000)
        return coordinator.CoordinatorPorts({}, config, lambda: 1_790_000_000_000)

    apart, together = wired(), wired()
    commands = drive(apart, "ReturnRequested", requested) + drive(apart, "ReturnAccepted", accepted)
    assert drive(together, "ReturnAccepted", record) == commands
    assert together.sagas == apart.sagas
    assert drive(together, "ReturnAccepted", record) == []  # a redelivery sends nothing


def test_the_views_fold_a_folded_record_like_the_two_events():
    requested, record = folded()
    accepted = {k: v for k, v in record.items() if k != "requested"}
    for fold in (fold_answer, fold_return):
        apart: dict = {}
        fold(apart, "ReturnRequested", requested)
        fold(apart, "ReturnAccepted", accepted)
        together: dict = {}
        fold(together, "ReturnAccepted", record)
        assert together == apart


def test_a_replay_judges_a_folded_record_new_until_its_events_are_applied():
    _, record = folded()
    rows = [("ReturnAccepted", record, None)]
    empty = {"coordinator": {}, "inspection": {}, "returns": {}}
    fresh = predict("boomerang.returns.events", rows, empty).as_dict()
    assert {fresh[consumer][NEW] for consumer in fresh} == {1}
    wired = coordinator.CoordinatorPorts({}, SagaConfig(), lambda: 1)
    drive(wired, "ReturnAccepted", record)
    sagas = {rid: value.stored_json() for rid, value in wired.sagas.items()}
    tables = {"coordinator": {"sagas": sagas}, "inspection": {}, "returns": {}}
    again = predict("boomerang.returns.events", rows, tables).as_dict()["coordinator/saga"]
    assert (again[NEW], again[APPLIED]) == (0, 1)
