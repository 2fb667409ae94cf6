"""What a replay would do to each consumer, from its dedupe state (pure, no Kafka)."""

from __future__ import annotations

from pathlib import Path

from services.decisions.saga import decide
from services.decisions.stock import inventory_ledger
from services.decisions.stock.disposition import movements_for
from services.tools.oncall import replay_effects
from services.tools.oncall.replay_effects import APPLIED, IGNORED, NEW, UNDECODABLE, predict
from tests.support.in_memory_loop import InMemoryLoop
from tests.support.return_events import envelope, event

REPO = Path(__file__).resolve().parents[2]
RID = "RMA-REPLAY-1"


def command_record(name: str, return_id: str = RID, **body) -> dict:
    """A command or outcome as its producer writes it (only what the consumers read)."""
    return {"envelope": envelope(name, return_id), **body}


def intake_command() -> dict:
    items = event("InspectionRecorded", RID)["items"]
    return command_record("IntakeRequested", warehouse_id="WH-1", items=items)


def verdicts(topic: str, records, tables) -> dict[str, dict[str, int]]:
    return predict(topic, records, tables).as_dict()


def test_events_the_saga_has_processed_are_already_applied_and_new_ones_are_new():
    requested, accepted = event("ReturnRequested", RID), event("ReturnAccepted", RID)
    state = decide(None, "ReturnRequested", requested, 1).state
    tables = {"coordinator": {"sagas": {RID: state.to_json()}}, "inspection": {}, "returns": {}}
    rows = [("ReturnRequested", requested, None), ("ReturnAccepted", accepted, None)]
    found = verdicts("boomerang.returns.events", rows, tables)["coordinator/saga"]
    assert (found[APPLIED], found[NEW]) == (1, 1)


def test_the_same_new_event_twice_in_one_replay_is_one_new_effect():
    accepted = event("ReturnAccepted", RID)
    state = decide(None, "ReturnRequested", event("ReturnRequested", RID), 1).state
    tables = {"coordinator": {"sagas": {RID: state.to_json()}}}
    rows = [("ReturnAccepted", accepted, None)] * 2
    found = verdicts("boomerang.intake.events", rows, tables)["coordinator/saga"]
    assert (found[NEW], found[APPLIED]) == (1, 1)


def test_a_refund_command_answered_before_is_already_applied():
    paid = command_record("RefundRequested")
    unpaid = command_record("RefundRequested", "RMA-OTHER")
    done = {RID: {paid["envelope"]["event_id"]: ["RefundIssued", {}]}}
    rows = [("RefundRequested", paid, None), ("RefundRequested", unpaid, None)]
    found = verdicts("boomerang.refund.commands", rows, {"refund": {"refunds": done}})
    assert found["refund/refund-commands"] == {NEW: 1, APPLIED: 1, IGNORED: 0, UNDECODABLE: 0}


def test_an_intake_whose_movements_are_all_booked_is_already_applied():
    command = intake_command()
    movements = movements_for(RID, command["warehouse_id"], command["items"])
    ledger: dict = {}
    for movement in movements:
        inventory_ledger.book(ledger, movement)
    intakes = {RID: {"warehouse_id": command["warehouse_id"], "movements": movements}}
    tables = {"warehouse-intake": {"intakes": intakes, "ledger": ledger}}
    rows = [("IntakeRequested", command, None)]
    assert (
        verdicts("boomerang.intake.commands", rows, tables)["warehouse-intake/intake-commands"][
            APPLIED
        ]
        == 1
    )
    fresh = {"warehouse-intake": {}}
    assert (
        verdicts("boomerang.intake.commands", rows, fresh)["warehouse-intake/intake-commands"][NEW]
        == 1
    )


def test_a_stock_movement_in_the_ledger_is_already_applied():
    command = intake_command()
    [movement, *_] = movements_for(RID, command["warehouse_id"], command["items"])
    ledger: dict = {}
    inventory_ledger.book(ledger, movement)
    record = command_record("StockMovementRecorded", movement=movement)
    rows = [("StockMovementRecorded", record, command["warehouse_id"].encode())]
    found = verdicts(
        "boomerang.intake.stock-movements", rows, {"warehouse-intake": {"ledger": ledger}}
    )
    assert found["warehouse-intake/ledger"][APPLIED] == 1


def test_a_record_that_cannot_be_decoded_would_be_dead_lettered_by_every_consumer():
    rows = [(None, None, b"RMA-1")]
    found = verdicts("boomerang.pickup.events", rows, {"coordinator": {}, "inspection": {}})
    assert found["coordinator/saga"][UNDECODABLE] == 1
    assert found["inspection/returns-view"][UNDECODABLE] == 1


def test_event_types_a_consumer_does_not_act_on_are_ignored():
    completed = command_record("ReturnCompleted")
    requested = event("ReturnRequested", RID)
    view = {"returns": {}}
    predict(
        "boomerang.returns.events",
        [("ReturnRequested", requested, None)],
        {"coordinator": {}, "inspection": view, "returns": {}},
    )
    rows = [("ReturnCompleted", completed, None)]
    found = verdicts("boomerang.saga.events", rows, {"coordinator": {}, "inspection": view})
    assert found["inspection/returns-view"][NEW] == 1  # the scanners' view closes the return
    assert found["coordinator/saga"][IGNORED] == 1  # its own outcome: not an input


def test_the_consumer_catalogue_matches_the_topics_each_service_subscribes_to():
    """Each service's composition root declares its consumers (`wiring`): the same topics
    as the catalogue the prediction uses (so no consumer is forgotten)."""
    for service, wiring in InMemoryLoop().wirings.items():
        names = {topic for sub in wiring.subscriptions for topic in sub.topics}
        catalogued = {
            topic
            for topic, consumers in replay_effects.CONSUMERS.items()
            if any(c.service == service for c in consumers)
        }
        assert names == catalogued, service
