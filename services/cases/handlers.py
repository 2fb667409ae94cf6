"""The cases service's handlers.

Each TicketOpened opens a case (decisions/cases/case_file.py) in the `cases` view, folded
from the tickets and the service's own case events (rebuilt from them after a restart; no
changelog). An agent assigns or closes a case over HTTP: the request becomes CaseAssigned
or CaseClosed on boomerang.support.cases, which this service folds like every other
record (an HTTP handler never writes the view). A timer escalates overdue cases
(CaseEscalated, its id from the case and the level: one per level however often the timer
sees it). Agents sign in at the marketplace: a support agent's bearer token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.decisions.cases import case_file
from services.decisions.cases.case_terms import CaseTerms
from services.decisions.event_ids import deterministic_event_id
from services.engine.due_timers import DueTimers
from services.eventing.envelope import new_envelope
from services.eventing.handler_contract import HttpAnswer, HttpRequest, Incoming, Outbound, Publish
from services.eventing.log_setup import event_context, get_logger
from services.eventing.marketplace_keys import TokenKeysUnavailable
from services.eventing.marketplace_tokens import Caller, TokenRefused
from services.eventing.request_fields import ApiError, Fields, invalid, parse_json_object

SERVICE = "cases"
STATUSES = ("open", "overdue", "closed", "all")
LISTED = 500
MAX_RULING_MINOR = 10**12  # an agent's amount: capped by the saga at what was kept
log = get_logger(__name__)


@dataclass
class CasesPorts:
    cases: MutableMapping[str, Any]  # return_id -> {case_id: case}
    terms: CaseTerms
    publish: Publish
    clock_ms: Callable[[], int]
    authenticate: Callable[[str | None, int], Awaitable[Caller]]
    due: DueTimers = field(default_factory=DueTimers)
    on_change: Callable[[str, dict[str, Any] | None, dict[str, Any]], None] = (
        lambda name, before, after: None
    )  # the metrics' hook: a case before and after an event

    async def agent(self, request: HttpRequest) -> Caller:
        try:
            caller = await self.authenticate(
                request.headers.get("Authorization"), self.clock_ms() // 1000
            )
        except TokenRefused as exc:
            raise ApiError(
                401, exc.reason, exc.detail, headers={"WWW-Authenticate": "Bearer"}
            ) from exc
        except TokenKeysUnavailable as exc:
            raise ApiError(
                503,
                "token_keys_unavailable",
                "the marketplace's signing keys could not be read; try again",
                headers={"Retry-After": "5"},
            ) from exc
        if caller.role != "support":
            raise ApiError(403, "support_only", "cases are worked by support agents")
        return caller

    def case(self, case_id: str) -> dict[str, Any]:
        found = (self.cases.get(case_file.return_id_of(case_id)) or {}).get(case_id)
        if found is None:
            raise ApiError(404, "unknown_case", f"no case {case_id}")
        return found


def fold_case(
    cases: MutableMapping[str, Any], name: str, record: dict[str, Any], terms: CaseTerms
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Apply one record to the view: (the case before, after) when one changed."""
    return_id = record["envelope"]["return_id"]
    before_all = cases.get(return_id) or {}
    if name == "TicketOpened":
        after_all = case_file.opened(before_all, record, terms)
        case_id = case_file.case_id_of(return_id, record["ticket_id"])
    elif name == "CaseAssigned":
        after_all, case_id = case_file.assigned(before_all, record), record["case_id"]
    elif name == "CaseEscalated":
        after_all, case_id = case_file.escalated(before_all, record, terms), record["case_id"]
    elif name == "CaseClosed":
        after_all, case_id = case_file.closed(before_all, record), record["case_id"]
    else:
        return None, None
    if after_all == before_all:
        return None, None
    cases[return_id] = after_all
    return before_all.get(case_id), after_all.get(case_id)


def view_fold(terms: CaseTerms) -> Callable[[MutableMapping[str, Any], str, dict[str, Any]], None]:
    def fold(cases: MutableMapping[str, Any], name: str, record: dict[str, Any]) -> None:
        fold_case(cases, name, record, terms)

    return fold


async def take(ports: CasesPorts, incoming: Incoming) -> list[Outbound]:
    before, after = fold_case(ports.cases, incoming.name, incoming.record, ports.terms)
    if after is not None:
        ports.on_change(incoming.name, before, after)
        due = case_file.next_due_at(ports.cases[incoming.return_id], ports.terms)
        if due is not None:
            ports.due.note(incoming.return_id, due)
    return []


def _due_at(terms: CaseTerms) -> Callable[[Any], int | None]:
    return lambda cases: case_file.next_due_at(cases, terms) if isinstance(cases, Mapping) else None


def due_escalations(ports: CasesPorts) -> list[Outbound]:
    """CaseEscalated for each open case past its due time (the view's next due noted
    again a minute on, in case the event is not folded by then)."""
    now = ports.clock_ms()
    events: list[Outbound] = []
    for return_id in ports.due.due(
        now, ports.cases.items(), len(ports.cases), _due_at(ports.terms)
    ):
        cases = ports.cases.get(return_id) or {}
        for case_id, level in case_file.due_escalations(cases, now, ports.terms):
            event_id = deterministic_event_id(return_id, "CaseEscalated", case_id, str(level))
            record = {
                "envelope": new_envelope(
                    "CaseEscalated", return_id, SERVICE, event_id=event_id, occurred_at=now
                ),
                "case_id": case_id,
                "case_type": cases[case_id]["type"],
                "level": level,
            }
            events.append(("CaseEscalated", record))
        if case_file.next_due_at(cases, ports.terms) is not None:
            ports.due.note(return_id, now + 60_000)
    return events


def shown(case: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    return {**case, "overdue": case_file.overdue(case, now_ms)}


async def list_cases(ports: CasesPorts, request: HttpRequest) -> HttpAnswer:
    """GET /cases?status=open|overdue|closed|all&type=&market=&assignee= (this instance's
    part; merged across instances by `merged_lists`)."""
    await ports.agent(request)
    query = request.query
    wanted = query.get("status", "open")
    if wanted not in STATUSES:
        raise ApiError(400, "invalid_parameter", f"status: one of {list(STATUSES)}")
    now = ports.clock_ms()
    found = []
    for _, cases in ports.cases.items():
        for case in cases.values():
            if wanted == "overdue" and not case_file.overdue(case, now):
                continue
            if wanted in ("open", "closed") and case["status"] != wanted:
                continue
            if any(
                query.get(k) and case.get(k) != query[k] for k in ("type", "market", "assignee")
            ):
                continue
            found.append(shown(case, now))
    found.sort(key=lambda case: (case["due_at"], case["case_id"]))
    return HttpAnswer(200, {"cases": found[:LISTED], "count": len(found)})


def merged_lists(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    cases = sorted(
        (case for part in parts for case in part["cases"]),
        key=lambda case: (case["due_at"], case["case_id"]),
    )
    return {"cases": cases[:LISTED], "count": sum(part["count"] for part in parts)}


async def show_case(ports: CasesPorts, request: HttpRequest, case_id: str) -> HttpAnswer:
    await ports.agent(request)
    return HttpAnswer(200, shown(ports.case(case_id), ports.clock_ms()))


async def assign_case(ports: CasesPorts, request: HttpRequest, case_id: str) -> HttpAnswer:
    agent = await ports.agent(request)
    fields = Fields(parse_json_object(request.body))
    assignee = fields.text("assignee", max_len=64)
    if fields.problems or assignee is None:
        raise invalid(fields.problems)
    case = ports.case(case_id)
    if case["status"] == case_file.CLOSED:
        raise ApiError(409, "case_closed", f"case {case_id} is closed ({case.get('outcome')})")
    body = {"case_id": case_id, "assignee": assignee, "by": agent.subject}
    return await _publish(ports, case, "CaseAssigned", body, assignee)


async def close_case(ports: CasesPorts, request: HttpRequest, case_id: str) -> HttpAnswer:
    """Close a case with one of its type's outcomes. A dispute's case closed with a ruling
    (full_refund, partial_refund or goodwill with `refund_minor`, upheld) also publishes
    DisputeRuled for the saga, which pays any difference unless a re-inspection decided
    first."""
    agent = await ports.agent(request)
    fields = Fields(parse_json_object(request.body))
    outcome = fields.text("outcome", max_len=64)
    note = fields.text("note", required=False, max_len=1000) or ""
    amount = fields.integer("refund_minor", required=False, minimum=1, maximum=MAX_RULING_MINOR)
    liable = fields.data.get("liable")
    if liable is not None:
        liable = fields.choice("liable", case_file.DISPUTE_PAYERS)
    if fields.problems or outcome is None:
        raise invalid(fields.problems)
    case = ports.case(case_id)
    try:
        case_file.check_close(case, outcome, ports.terms)
        ruling = case_file.dispute_ruling(case, outcome, amount, liable)
    except case_file.CaseRefused as exc:
        status = 409 if case["status"] == case_file.CLOSED else 422
        raise ApiError(status, "case_refused", str(exc)) from exc
    body = {"case_id": case_id, "outcome": outcome, "note": note, "by": agent.subject}
    more = []
    if ruling is not None:
        ruled = {**ruling, "agent_id": agent.subject, "note": note}
        more.append(_record(ports, case, "DisputeRuled", ruled, outcome))
    return await _publish(ports, case, "CaseClosed", body, outcome, more)


async def dispute_decided(ports: CasesPorts, incoming: Incoming) -> list[Outbound]:
    """A dispute the re-inspection decided closes its case (an agent's ruling closed it
    already)."""
    record = incoming.record
    if record.get("decided_by") != "reinspection":
        return []
    case = case_file.dispute_case(
        ports.cases.get(incoming.return_id) or {}, str(record["dispute_id"])
    )
    if case is None or case["status"] == case_file.CLOSED:
        return []
    outcome = "decided_by_reinspection"
    body = {"case_id": case["case_id"], "outcome": outcome, "note": record["decision"]}
    return [_record(ports, case, "CaseClosed", {**body, "by": "reinspection"}, outcome)]


def _record(
    ports: CasesPorts, case: Mapping[str, Any], name: str, body: dict[str, Any], what: str
) -> Outbound:
    return_id = case["return_id"]
    event_id = deterministic_event_id(return_id, name, case["case_id"], what)
    at = ports.clock_ms()
    envelope = new_envelope(name, return_id, SERVICE, event_id=event_id, occurred_at=at)
    return name, {"envelope": envelope, **body}


async def _publish(
    ports: CasesPorts,
    case: Mapping[str, Any],
    name: str,
    body: dict[str, Any],
    what: str,
    more: list[Outbound] | None = None,
) -> HttpAnswer:
    outbound = _record(ports, case, name, body, what)
    envelope = outbound[1]["envelope"]
    with event_context(envelope):
        await ports.publish([outbound, *(more or ())])
        log.info("case changed", case_id=case["case_id"], change=name, by=body["by"])
    answer = {"case_id": case["case_id"], "status": "accepted", "event_id": envelope["event_id"]}
    return HttpAnswer(202, answer)
