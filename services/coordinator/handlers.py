"""The coordinator's handlers around the pure saga (services/decisions/saga): each event
moves one return's saga (one record in the `sagas` table: what later steps read, and its
explanation, the history and rules fired: saga/stored.py), due timers become
SagaStepTimedOut events, and the saga is shown on GET /returns/{return_id} and GET /returns."""

from __future__ import annotations

from collections.abc import Callable, Collection, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.coordinator.archived_sagas import MemoryArchive, SagaArchive, archived_saga
from services.decisions import saga
from services.decisions.after_sales.saga_figures import SagaFigures, saga_figures
from services.decisions.folded_events import unfolded
from services.decisions.saga import archiving
from services.decisions.saga import stored as stored_saga
from services.engine.due_timers import DueTimers
from services.engine.stored_value import Settled
from services.eventing.envelope import deterministic_event_id, new_envelope
from services.eventing.handler_contract import (
    HttpAnswer,
    HttpRequest,
    Incoming,
    Outbound,
    TransientFailure,
)
from services.eventing.log_setup import get_logger
from services.eventing.topics import (
    INSPECTION_EVENTS,
    INTAKE_EVENTS,
    ORDER_REFUND_LEDGER,
    PICKUP_EVENTS,
    POLICY_SNAPSHOTS,
    REFUND_EVENTS,
    RETURNS_EVENTS,
    RISK_EVENTS,
    SAGA_ARCHIVE,
    SAGA_EVENTS,
)

SERVICE = "coordinator"
# SAGA_EVENTS carries the saga's own timeouts (SagaStepTimedOut) back to it.
INPUTS = (
    RETURNS_EVENTS,
    PICKUP_EVENTS,
    INSPECTION_EVENTS,
    INTAKE_EVENTS,
    REFUND_EVENTS,
    RISK_EVENTS,
    SAGA_EVENTS,
    SAGA_ARCHIVE,  # its own SagaArchived records, taken back (archive_saga)
)
TERMINAL = frozenset(str(status) for status in saga.TERMINAL)
# Commands for the order refund ledger are keyed by order_ref (one owner per order).
KEYED_BY_ORDER = frozenset(ORDER_REFUND_LEDGER.record_types)
REFIRE_AFTER_MS = 15_000  # a fired timer not handled yet is fired again (same event id)
FIRED_TIMERS_KEPT = 100_000
LISTED_RETURNS = 1000
log = get_logger(__name__)


class PolicySnapshots(Protocol):
    """The effective policies accepted returns name by digest (boomerang.policy.snapshots)."""

    async def get(self, key: str) -> str | None: ...


class NoPolicySnapshots:
    """For a coordinator fed only records that carry their policy (policy_json)."""

    async def get(self, key: str) -> str | None:
        return None


@dataclass
class CoordinatorPorts:
    sagas: MutableMapping[str, Any]  # return_id -> the saga (LiveSaga, or its stored record)
    config: saga.SagaConfig
    clock_ms: Callable[[], int]
    fired: dict[tuple[str, str], int] = field(default_factory=dict)  # timer -> when it fired
    policies: PolicySnapshots = field(default_factory=NoPolicySnapshots)
    timers: DueTimers = field(default_factory=DueTimers)  # the sagas by when their timer is due
    # finished sagas past their retention (saga_archive.py), and the finished ones by when
    # they are due to go there
    archive: SagaArchive = field(default_factory=MemoryArchive)
    archive_timers: DueTimers = field(default_factory=DueTimers)
    owned_partitions: Callable[[], Collection[int] | None] = lambda: None  # None: all
    # what each step adds to the after-sales figures, and the return it is of (metrics)
    figures: Callable[[SagaFigures, str], None] = lambda figures, return_id: None


@dataclass(frozen=True)
class LiveSaga:
    """A saga as the coordinator keeps it in its table between checkpoints: the state itself
    (without its history) and its explanation, made into the stored record (saga/stored.py)
    only when the checkpoint writes it (a table recovered from the changelog holds those
    records)."""

    state: saga.SagaState
    explanation: dict[str, Any]

    def stored_json(self) -> dict[str, Any]:
        return stored_saga.stored_record(self.state, self.explanation)


# A saga in the table: kept live (LiveSaga), finished and kept as its changelog bytes
# (Settled, labelled with its status), or as the changelog's JSON (restored, not finished).
SagaValue = LiveSaga | Settled | dict[str, Any]


def explanation_of(value: SagaValue | None) -> dict[str, Any] | None:
    if isinstance(value, LiveSaga):
        return value.explanation
    return stored_saga.explanation_in(_stored_json(value)) if value else None


def saga_of(value: SagaValue) -> saga.SagaState:
    """The state a step decides from, whether kept live or read from its stored form."""
    if isinstance(value, LiveSaga):
        return value.state
    return stored_saga.loaded_state(_stored_json(value))


def shown_of(value: SagaValue) -> saga.SagaState:
    """The whole state for the views, its history and every rule fired put back."""
    stored = value.stored_json() if isinstance(value, LiveSaga | Settled) else value
    return stored_saga.shown_state(stored)


def _stored_json(value: Settled | dict[str, Any]) -> dict[str, Any]:
    return value.stored_json() if isinstance(value, Settled) else value


def settled_saga(config: saga.SagaConfig, stored: dict[str, Any], raw: bytes) -> Settled | None:
    """A restored saga kept Settled (its bytes, status, and when it is archived) if it is
    finished, else None (the table's `settles`)."""
    status = stored.get("status")
    if status not in TERMINAL:
        return None
    updated_at = int(stored.get("updated_at") or 0)
    return Settled(raw, status, archiving.archive_time(status, updated_at, config))


def table_value(
    state: saga.SagaState, explanation: dict[str, Any], config: saga.SagaConfig
) -> LiveSaga | Settled:
    """What the table keeps of a saga: live objects while it runs; once finished, its
    stored form as bytes (read again only for a late event or a page)."""
    live = LiveSaga(saga.changed(state, history=()), explanation)
    if not state.terminal:
        return live
    return Settled.of(live.stored_json(), str(state.status), archiving.archive_at(state, config))


def keyed(command: saga.Command) -> Outbound:
    name, record = command
    if name in KEYED_BY_ORDER:
        return name, record, record["order_ref"].encode()
    return command


async def drive_saga(ports: CoordinatorPorts, incoming: Incoming) -> list[Outbound]:
    if incoming.name == "SagaArchived":
        archive_saga(ports, incoming)
        return []
    commands: list[Outbound] = []
    for name, record in unfolded(incoming.name, incoming.record):
        if name == "ReturnAccepted" and _deciding_acceptance(ports, incoming.return_id):
            record = await with_policy(ports, record)
        elif name == "DisputeRequested":
            record = await with_disputed_policy(ports, incoming.return_id, record)
        commands += _drive(ports, incoming.return_id, name, record)
    return commands


def _deciding_acceptance(ports: CoordinatorPorts, return_id: str) -> bool:
    """The saga has not taken a decision yet (a redelivered ReturnAccepted of a saga past it
    is a duplicate: it needs no policy)."""
    stored = ports.sagas.get(return_id)
    return stored is None or saga_of(stored).status in (saga.Status.NEW, saga.Status.REQUESTED)


async def with_disputed_policy(
    ports: CoordinatorPorts, return_id: str, record: dict[str, Any]
) -> dict[str, Any]:
    """A DisputeRequested with the policy the return was accepted under (by the digest the
    saga kept): the dispute works the refund out again from it."""
    stored = ports.sagas.get(return_id)
    digest = saga_of(stored).request.get("policy_digest") if stored is not None else None
    if not digest:
        return record
    return await with_policy(ports, {**record, "policy_digest": digest})


async def with_policy(ports: CoordinatorPorts, record: dict[str, Any]) -> dict[str, Any]:
    """A ReturnAccepted with the policy it names by digest put in `policy_json`, as the
    saga reads it (records before v4 carry it). The front door publishes a policy before
    the first return that names it, so a miss is retried (and dead-lettered, with this
    reason, when it outlives the retries)."""
    digest = record.get("policy_digest")
    if not digest or record.get("policy_json"):
        return record
    policy_json = await ports.policies.get(digest)
    if policy_json is None:
        raise TransientFailure(
            f"policy {digest} is not on {POLICY_SNAPSHOTS.name}: ReturnAccepted names a "
            "policy the front door has not published"
        )
    return {**record, "policy_json": policy_json}


def _drive(
    ports: CoordinatorPorts, return_id: str, name: str, record: dict[str, Any]
) -> list[Outbound]:
    stored = ports.sagas.get(return_id)
    if stored is None and ports.archive.get(return_id) is not None:
        log.info("event of an archived return ignored", event_type=name)
        return []
    state = saga_of(stored) if stored else None
    transition = saga.decide(state, name, record, ports.clock_ms(), ports.config)
    if not transition.duplicate:
        # the history is not kept live: the explanation takes the entries of this event
        explanation = stored_saga.explanation_after(explanation_of(stored), state, transition.state)
        value = table_value(transition.state, explanation, ports.config)
        ports.sagas[return_id] = value
        timer = transition.state.timer
        if timer and (state is None or timer != state.timer):
            ports.timers.note(return_id, timer["due_at"])
        if isinstance(value, Settled) and value.archive_at is not None:
            ports.archive_timers.note(return_id, value.archive_at)
        ports.figures(saga_figures(state, transition.state), return_id)
    log.debug(
        "saga event",
        event_type=name,
        status=str(transition.state.status),
        duplicate=transition.duplicate,
        ignored=transition.ignored,
        commands=[command for command, _ in transition.commands],
    )
    already_fired = len(state.rules_fired) if state else 0
    for rule in transition.state.rules_fired[already_fired:]:  # rules are only appended
        log.debug("rule fired", **rule)
    return [keyed(command) for command in transition.commands]


def timeout_event(state: saga.SagaState, timer: dict[str, Any], now_ms: int) -> saga.Command:
    """The event a due timer becomes; its id derives from the timer: firing twice is one event."""
    return_id = state.return_id
    record = {
        "envelope": new_envelope(
            "SagaStepTimedOut",
            return_id,
            SERVICE,
            correlation_id=state.correlation_id or return_id,
            event_id=deterministic_event_id(return_id, "timer", timer["id"]),
            occurred_at=now_ms,
        ),
        "step": timer["step"],
        "timer_id": timer["id"],
        "deadline_at": timer["due_at"],
    }
    return "SagaStepTimedOut", record


def due_timer_events(ports: CoordinatorPorts) -> list[Outbound]:
    """Durable timers: deadlines and retry times live in each saga's state (so they survive
    restarts), indexed by due time (due_timers.py); the due ones become SagaStepTimedOut
    events, each fired again only after REFIRE_AFTER_MS if it was not handled by then."""
    now = ports.clock_ms()
    due: list[Outbound] = []
    sagas = ports.sagas
    for return_id in ports.timers.due(now, sagas.items(), len(sagas), _live_timer_due_at):
        try:
            event = _due_timer_event(ports, return_id, now)
        except Exception:  # one saga that cannot be read keeps its place, the rest fire
            log.exception("due timer not read; tried again later", return_id=return_id)
            ports.timers.note(return_id, now + REFIRE_AFTER_MS)
            continue
        if event is not None:
            due.append(event)
    if len(ports.fired) > FIRED_TIMERS_KEPT:
        ports.fired.clear()
    return due


def _due_timer_event(ports: CoordinatorPorts, return_id: str, now: int) -> Outbound | None:
    stored = ports.sagas.get(return_id)
    state = saga_of(stored) if stored else None
    timer = state.timer if state else None
    if not state or not timer or state.terminal or timer["due_at"] > now:
        return None  # finished, or its timer changed (the new one was noted when set)
    fired_at = ports.fired.get((return_id, timer["id"]))
    if fired_at is not None and now - fired_at < REFIRE_AFTER_MS:
        ports.timers.note(return_id, fired_at + REFIRE_AFTER_MS)
        return None
    ports.fired[(return_id, timer["id"])] = now
    ports.timers.note(return_id, now + REFIRE_AFTER_MS)  # again if not handled by then
    return timeout_event(state, timer, now)


def _live_timer_due_at(value: SagaValue) -> int | None:
    if isinstance(value, Settled):
        return None  # finished
    try:
        state = saga_of(value)
    except (KeyError, TypeError, ValueError) as exc:  # its events will say so, dead-lettered
        log.warning("a stored saga cannot be read for its timer", error=repr(exc))
        return None
    return None if state.terminal or not state.timer else int(state.timer["due_at"])


async def return_status(
    ports: CoordinatorPorts, request: HttpRequest, return_id: str
) -> HttpAnswer:
    stored = ports.sagas.get(return_id)
    if stored:
        return HttpAnswer(200, saga.status_view(shown_of(stored)))
    if archived := ports.archive.get(return_id):
        view = archiving.archived_view(archived.view_json, archived.status, archived.finished_at)
        return HttpAnswer(200, view)
    return HttpAnswer(404, {"error": "not_found", "detail": f"no return {return_id}"})


def archive_due_records(ports: CoordinatorPorts) -> list[Outbound]:
    """SagaArchived records of the finished sagas past their retention (the timer loop
    publishes them; the coordinator takes each back as an input and removes the saga). A
    record not taken back by REFIRE_AFTER_MS is made again (the same event)."""
    now = ports.clock_ms()
    sagas = ports.sagas
    records: list[Outbound] = []
    for return_id in ports.archive_timers.due(now, sagas.items(), len(sagas), _archive_at):
        value = sagas.get(return_id)
        if not isinstance(value, Settled) or value.archive_at is None or value.archive_at > now:
            continue  # changed since, or gone
        try:
            finished_at = saga_of(value).updated_at
            view = saga.status_view(shown_of(value))
        except (KeyError, TypeError, ValueError):  # one that cannot be read stays
            log.exception("finished saga not archived", return_id=return_id)
            continue
        record = archiving.archived_record(return_id, value.label, finished_at, view, now)
        records.append(("SagaArchived", record))
        ports.archive_timers.note(return_id, now + REFIRE_AFTER_MS)
    return records


def _archive_at(value: SagaValue) -> int | None:
    return value.archive_at if isinstance(value, Settled) else None


def archive_saga(ports: CoordinatorPorts, incoming: Incoming) -> None:
    """A SagaArchived taken back: kept in the archive, and the saga it archived removed from
    the table (unless it changed since: then a later record archives it)."""
    archived = archived_saga(incoming.record)
    ports.archive.put(archived, incoming.partition, incoming.offset)
    stored = ports.sagas.get(archived.return_id)
    if isinstance(stored, Settled) and saga_of(stored).updated_at == archived.finished_at:
        del ports.sagas[archived.return_id]
        log.debug("saga archived", status=archived.status)


async def list_returns(ports: CoordinatorPorts, request: HttpRequest) -> HttpAnswer:
    """Counts per status, and the ids of the returns in `?status=` (at most LISTED_RETURNS)."""
    wanted = request.query.get("status")
    partitions = ports.owned_partitions()  # the archive's rows of these (None: all)
    counts: dict[str, int] = ports.archive.counts(partitions)
    matching = ports.archive.with_status(wanted, partitions, LISTED_RETURNS) if wanted else []
    for return_id, stored in ports.sagas.items():
        status = stored.label if isinstance(stored, Settled) else str(saga_of(stored).status)
        counts[status] = counts.get(status, 0) + 1
        if wanted and status == wanted:
            matching.append(return_id)
    return HttpAnswer(200, {"counts": counts, "return_ids": sorted(matching)[:LISTED_RETURNS]})


def merged_listings(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """GET /returns of every instance as one: counts added, ids merged (LISTED_RETURNS)."""
    counts: dict[str, int] = {}
    for part in parts:
        for status, count in part["counts"].items():
            counts[status] = counts.get(status, 0) + count
    ids = sorted(return_id for part in parts for return_id in part["return_ids"])
    return {"counts": counts, "return_ids": ids[:LISTED_RETURNS]}
