"""What re-delivering records would do to each consumer (pure: dedupe state in, verdicts out).

Each consumer group is asked the question its own code asks on delivery, against a snapshot
of its tables (read from their changelogs by the caller):

- coordinator: `saga.decide` itself: a processed event id is a duplicate;
- pickup / refund commands: is the command's event id among the return's stored answers;
- order refund ledger: does `reserve`/`release` change the order's entry;
- warehouse intake: are all the movements the command decides already in the ledger;
- inventory ledger: is the movement id in its sku@warehouse entry (or the older
  sku@location one);
- inspection's and the front door's views: does the view change (no effect outside).

A record predicted "new" updates the snapshot, so a replay that holds one event twice
predicts one new effect, as the consumer would do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.decisions import saga
from services.decisions.folded_events import unfolded
from services.decisions.refunds import order_refund_ledger
from services.decisions.saga import stored as stored_saga
from services.decisions.stock import inventory_ledger
from services.decisions.stock.disposition import movements_for, reversal_movements
from services.eventing.topics import (
    INSPECTION_EVENTS,
    INTAKE_COMMANDS,
    INTAKE_EVENTS,
    ORDER_REFUND_LEDGER,
    ORDERS,
    PICKUP_COMMANDS,
    PICKUP_EVENTS,
    REFUND_COMMANDS,
    REFUND_EVENTS,
    RETURNS_EVENTS,
    RISK_COMMANDS,
    RISK_COUNTS,
    RISK_EVENTS,
    RISK_SELLERS,
    SAGA_ARCHIVE,
    SAGA_EVENTS,
    STOCK_MOVEMENTS,
)
from services.inspection import return_tracking

NEW = "new"  # the consumer would change something it has not changed before
APPLIED = "already_applied"  # its dedupe state says it was done; nothing happens again
IGNORED = "ignored"  # the consumer does not act on this event type (or it changes nothing)
UNDECODABLE = "dead_letter"  # it cannot be decoded: it would go to the dead-letter topic

Tables = dict[str, dict[str, Any]]  # table name → key → latest value


@dataclass
class Consumer:
    """One consumer group's reading of a topic: its service, group, the tables it
    deduplicates with, and its verdict on one decoded record."""

    service: str
    agent: str
    tables: tuple[str, ...]
    verdict: Callable[[Tables, str, dict[str, Any], bytes | None], str]

    @property
    def group(self) -> str:
        return f"boomerang-{self.service}"


def _answered(table: str) -> Callable[[Tables, str, dict[str, Any], bytes | None], str]:
    """Commands answered once per event id: {return_id: {command id: [name, record]}}."""

    def verdict(tables: Tables, name: str, record: dict[str, Any], key: bytes | None) -> str:
        envelope = record["envelope"]
        done = tables[table].get(envelope["return_id"]) or {}
        if envelope["event_id"] in done:
            return APPLIED
        tables[table][envelope["return_id"]] = {**done, envelope["event_id"]: [name, {}]}
        return NEW

    return verdict


_AS_RUN = saga.SagaConfig(risk_step=1)  # as the coordinator runs it


def _saga(tables: Tables, name: str, record: dict[str, Any], key: bytes | None) -> str:
    if name not in saga.CONSUMED_EVENTS:
        return IGNORED
    return_id = record["envelope"]["return_id"]
    stored = tables["sagas"].get(return_id)
    state = stored_saga.loaded_state(stored) if stored else None
    transition = saga.decide(state, name, record, record["envelope"]["occurred_at"], _AS_RUN)
    if transition.duplicate:
        return APPLIED
    tables["sagas"][return_id] = stored_saga.slim_record(transition.state)
    return IGNORED if transition.ignored else NEW


def _archived(tables: Tables, name: str, record: dict[str, Any], key: bytes | None) -> str:
    """A SagaArchived taken back removes the finished saga it archived (if unchanged)."""
    stored = tables["sagas"].get(record["envelope"]["return_id"])
    if stored and stored.get("updated_at") == record["finished_at"]:
        del tables["sagas"][record["envelope"]["return_id"]]
        return NEW
    return APPLIED


def _order_ledger(tables: Tables, name: str, record: dict[str, Any], key: bytes | None) -> str:
    order_ref, return_id = record["order_ref"], record["envelope"]["return_id"]
    entry = tables["order-ledger"].get(order_ref)
    change = (
        order_refund_ledger.reserve
        if name == "RefundReservationRequested"
        else order_refund_ledger.release
    )
    after, _ = change(entry, return_id, record)
    if after == entry:
        return APPLIED
    tables["order-ledger"][order_ref] = after
    return NEW


def _book(tables: Tables, movements: list[dict[str, Any]], at_ms: int = 0) -> bool:
    """Apply movements to the ledger snapshot; True if any was not there yet."""
    moved_any = False
    ledger = tables["ledger"]
    for movement in movements:
        moved = inventory_ledger.book(ledger, movement, at_ms)
        moved_any = moved_any or moved
    return moved_any


def _intake(tables: Tables, name: str, record: dict[str, Any], key: bytes | None) -> str:
    return_id = record["envelope"]["return_id"]
    intake = tables["intakes"].get(return_id)
    if name == "IntakeReverseRequested":
        warehouse = (intake or {}).get("warehouse_id", "")
        movements = reversal_movements(return_id, warehouse, (intake or {}).get("movements", []))
        return NEW if _book(tables, movements) else APPLIED
    movements = movements_for(return_id, record["warehouse_id"], record["items"])
    first_time = intake is None
    if first_time:
        tables["intakes"][return_id] = {
            "warehouse_id": record["warehouse_id"],
            "movements": movements,
        }
    return NEW if _book(tables, movements) or first_time else APPLIED


def _stock_movement(tables: Tables, name: str, record: dict[str, Any], key: bytes | None) -> str:
    movements = inventory_ledger.movements_of(name, record)
    return NEW if _book(tables, movements, record["envelope"]["occurred_at"]) else APPLIED


def _returns_view(tables: Tables, name: str, record: dict[str, Any], key: bytes | None) -> str:
    if name not in return_tracking.TRACKED_EVENTS:
        return IGNORED
    return_id = record["envelope"]["return_id"]
    current = tables["returns"].get(return_id)
    view = return_tracking.track(current, name, record)
    if view is None or view == current:
        return APPLIED
    tables["returns"][return_id] = view
    return NEW


def _front_door_answers(
    tables: Tables, name: str, record: dict[str, Any], key: bytes | None
) -> str:
    return_id = record["envelope"]["return_id"]
    known = tables["answers"].get(return_id)
    if name == "ReturnRequested":
        if known is not None:
            return APPLIED
        tables["answers"][return_id] = {"status": None}
        return NEW
    if name in ("ReturnAccepted", "ReturnRejected"):
        if known is None or known.get("status") is not None:
            return APPLIED
        tables["answers"][return_id] = {**known, "status": name}
        return NEW
    return IGNORED


def _risk_facts(tables: Tables, name: str, record: dict[str, Any], key: bytes | None) -> str:
    """Counted once per return and event kind (risk's `returns` table)."""
    return_id = record["envelope"]["return_id"]
    entry = tables["returns"].get(return_id)
    if name == "ReturnRequested":
        if entry is not None:
            return APPLIED
        tables["returns"][return_id] = {"counted": []}
        return NEW
    what = {"ReturnAccepted": "accepted", "InspectionRecorded": "inspection"}.get(name)
    if what is None or entry is None:
        return IGNORED
    if what in entry["counted"]:
        return APPLIED
    if name == "InspectionRecorded":
        return IGNORED  # counted here only when the saga rejects it; else after its decision
    tables["returns"][return_id] = {**entry, "counted": [*entry["counted"], what]}
    return NEW


def _risk_orders(tables: Tables, name: str, record: dict[str, Any], key: bytes | None) -> str:
    if name != "OrderPlaced":
        return IGNORED
    ref = record["order"]["order_ref"]
    if ref in tables["orders"]:
        return APPLIED
    tables["orders"][ref] = {}
    return NEW


def _risk_windows(tables: Tables, name: str, record: dict[str, Any], key: bytes | None) -> str:
    """An increment a key's entry took (its source offset or recent id) adds nothing."""
    table_key = f"{record['subject']}:{record['key']}"
    entry = tables["windows"].get(table_key) or {}
    if record["envelope"]["event_id"] in entry.get("recent", ()):
        return APPLIED
    if record["source_offset"] <= entry.get("applied", {}).get(record["source"], -1):
        return APPLIED
    tables["windows"][table_key] = {
        **entry,
        "recent": [*entry.get("recent", ()), record["envelope"]["event_id"]],
    }
    return NEW


def _risk_checks(tables: Tables, name: str, record: dict[str, Any], key: bytes | None) -> str:
    """A return decided before gets its first answer again (nothing new)."""
    return_id = record["envelope"]["return_id"]
    if return_id in tables["cases"]:
        return APPLIED
    tables["cases"][return_id] = {"decided": {"decision_id": record["decision_id"]}}
    return NEW


def _risk_cases(tables: Tables, name: str, record: dict[str, Any], key: bytes | None) -> str:
    return_id = record["envelope"]["return_id"]
    known = tables["cases"].get(return_id)
    if name == "RiskDecided":
        if known is not None:
            return APPLIED
        tables["cases"][return_id] = {"decided": record, "verdict": None}
        return NEW
    if known is None or known.get("verdict") is not None:
        return APPLIED
    tables["cases"][return_id] = {**known, "verdict": record}
    return NEW


def _risk_standings(tables: Tables, name: str, record: dict[str, Any], key: bytes | None) -> str:
    """A standing the view holds (or a later one) changes nothing."""
    stored = f"{record['seller_id']}|{record['market']}"
    known = tables["standings"].get(stored)
    if known is not None and known["day"] >= record["day"]:
        return APPLIED
    tables["standings"][stored] = {"day": record["day"]}
    return NEW


Verdict = Callable[[Tables, str, dict[str, Any], bytes | None], str]


def _unfolding(verdict: Verdict) -> Verdict:
    """A record carrying its request is judged as the events it stands for: new if any is."""

    def judged(tables: Tables, name: str, record: dict[str, Any], key: bytes | None) -> str:
        verdicts = {verdict(tables, each, event, key) for each, event in unfolded(name, record)}
        return next(v for v in (NEW, APPLIED, IGNORED) if v in verdicts)

    return judged


_COORDINATOR = Consumer("coordinator", "saga", ("sagas",), _unfolding(_saga))
_INSPECTION = Consumer("inspection", "returns-view", ("returns",), _unfolding(_returns_view))
_RISK_FACTS = Consumer("risk", "return-facts", ("returns",), _unfolding(_risk_facts))

# topic → the consumers that read it (the agents in each service's app.py)
CONSUMERS: dict[str, tuple[Consumer, ...]] = {
    RETURNS_EVENTS.name: (
        _COORDINATOR,
        _INSPECTION,
        Consumer("returns", "answers", ("answers",), _unfolding(_front_door_answers)),
        _RISK_FACTS,
    ),
    PICKUP_COMMANDS.name: (
        Consumer("pickup", "pickup-commands", ("pickups",), _answered("pickups")),
    ),
    PICKUP_EVENTS.name: (_COORDINATOR, _INSPECTION),
    INSPECTION_EVENTS.name: (_COORDINATOR, _INSPECTION, _RISK_FACTS),
    INTAKE_COMMANDS.name: (
        Consumer("warehouse-intake", "intake-commands", ("intakes", "ledger"), _intake),
    ),
    INTAKE_EVENTS.name: (_COORDINATOR,),
    STOCK_MOVEMENTS.name: (Consumer("warehouse-intake", "ledger", ("ledger",), _stock_movement),),
    REFUND_COMMANDS.name: (
        Consumer("refund", "refund-commands", ("refunds",), _answered("refunds")),
    ),
    ORDER_REFUND_LEDGER.name: (
        Consumer("refund", "order-ledger", ("order-ledger",), _order_ledger),
    ),
    REFUND_EVENTS.name: (_COORDINATOR,),
    SAGA_EVENTS.name: (_COORDINATOR, _INSPECTION),
    SAGA_ARCHIVE.name: (Consumer("coordinator", "saga", ("sagas",), _archived),),
    ORDERS.name: (Consumer("risk", "orders", ("orders",), _risk_orders),),
    RISK_COUNTS.name: (Consumer("risk", "windows", ("windows",), _risk_windows),),
    RISK_COMMANDS.name: (Consumer("risk", "checks", ("cases",), _risk_checks),),
    RISK_SELLERS.name: (Consumer("risk", "sellers", ("standings",), _risk_standings),),
    RISK_EVENTS.name: (
        _COORDINATOR,
        Consumer("risk", "decisions", ("cases",), _risk_cases),
    ),
}


def consumers_of(topic: str) -> tuple[Consumer, ...]:
    return CONSUMERS.get(topic, ())


@dataclass
class EffectPrediction:
    """Per consumer (service/agent): how many records would be new, already applied,
    ignored or dead-lettered."""

    counts: dict[str, Counter] = field(default_factory=dict)
    new_at: dict[str, list[int]] = field(default_factory=dict)  # consumer → record indexes

    def add(self, consumer: Consumer, verdict: str, index: int = 0) -> None:
        name = f"{consumer.service}/{consumer.agent}"
        self.counts.setdefault(name, Counter())[verdict] += 1
        if verdict == NEW:
            self.new_at.setdefault(name, []).append(index)

    @property
    def new_effects(self) -> int:
        return sum(c[NEW] for c in self.counts.values())

    def as_dict(self) -> dict[str, dict[str, int]]:
        verdicts = (NEW, APPLIED, IGNORED, UNDECODABLE)
        return {
            name: {v: counts.get(v, 0) for v in verdicts}
            for name, counts in sorted(self.counts.items())
        }


def predict(
    topic: str,
    records: list[tuple[str | None, dict[str, Any] | None, bytes | None]],
    tables_by_service: dict[str, Tables],
    consumers: tuple[Consumer, ...] | None = None,
) -> EffectPrediction:
    """`records` in delivery order as (event type, decoded record, key); (None, None, key)
    for one that cannot be decoded. `tables_by_service` is changed as the consumers would."""
    prediction = EffectPrediction()
    for consumer in consumers if consumers is not None else consumers_of(topic):
        tables = tables_by_service.setdefault(consumer.service, {})
        for table in consumer.tables:
            tables.setdefault(table, {})
        for index, (name, record, key) in enumerate(records):
            if name is None or record is None:
                prediction.add(consumer, UNDECODABLE, index)
            else:
                prediction.add(consumer, consumer.verdict(tables, name, record, key), index)
    return prediction


def tables_needed(topic: str) -> dict[str, set[str]]:
    """service → the table names whose changelogs the prediction for `topic` reads."""
    needed: dict[str, set[str]] = {}
    for consumer in consumers_of(topic):
        needed.setdefault(consumer.service, set()).update(consumer.tables)
    return needed
