"""A return's support cases, as stored state, and how events change them (pure).

The state of a return is `{case_id: case}`; a case opens from a ticket (its type from the
ticket's category, its due time from the type's SLA in the return's market), may be
assigned (and re-assigned), escalates when overdue (level 1, 2, … up to `max_level`, each
`escalate_every_ms` after the last), and closes once with an outcome its type allows. The
same event twice changes nothing (each changes a case only from the state it names).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.decisions.cases.case_terms import CaseTerms

OPEN, CLOSED = "open", "closed"


class CaseRefused(ValueError):
    """A command that does not apply to the case (closed, or an outcome not of its type)."""


def case_id_of(return_id: str, ticket_id: str) -> str:
    """The case a ticket opens; the return's id comes first (its owner is found from it)."""
    return f"{return_id}.{ticket_id[:8]}"


def return_id_of(case_id: str) -> str:
    return case_id.rpartition(".")[0]


def opened(
    cases: Mapping[str, Any] | None, ticket: Mapping[str, Any], terms: CaseTerms
) -> dict[str, Any]:
    """The return's cases with the one `ticket` (a TicketOpened) opens (once)."""
    cases = dict(cases or {})
    envelope = ticket["envelope"]
    case_id = case_id_of(envelope["return_id"], ticket["ticket_id"])
    if case_id in cases:
        return cases
    facts = dict(ticket.get("facts") or {})
    market = facts.get("market", "")
    case_type = terms.type_of(ticket["category"])
    at = int(envelope["occurred_at"])
    cases[case_id] = {
        "case_id": case_id,
        "return_id": envelope["return_id"],
        "ticket_id": ticket["ticket_id"],
        "type": case_type.name,
        "category": ticket["category"],
        "summary": ticket.get("summary", ""),
        "market": market,
        "facts": facts,
        "status": OPEN,
        "opened_at": at,
        "due_at": at + case_type.sla_ms(market),
        "level": 0,
        "assignee": None,
        "history": [{"at": at, "what": "opened", "by": "system"}],
    }
    return cases


def _changed(cases: Mapping[str, Any], case: dict[str, Any], entry: dict[str, Any]) -> dict:
    history = [*case["history"], entry][-50:]
    return {**cases, case["case_id"]: {**case, "history": history}}


def assigned(cases: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    case = cases.get(record["case_id"])
    if case is None or case["status"] == CLOSED or case["assignee"] == record["assignee"]:
        return dict(cases)
    at = int(record["envelope"]["occurred_at"])
    changed = {**case, "assignee": record["assignee"]}
    return _changed(
        cases, changed, {"at": at, "what": f"assigned to {record['assignee']}", "by": record["by"]}
    )


def escalated(cases: Mapping[str, Any], record: Mapping[str, Any], terms: CaseTerms) -> dict:
    case = cases.get(record["case_id"])
    if case is None or case["status"] == CLOSED or record["level"] != case["level"] + 1:
        return dict(cases)
    at = int(record["envelope"]["occurred_at"])
    changed = {**case, "level": record["level"], "due_at": at + terms.escalate_every_ms}
    return _changed(
        cases, changed, {"at": at, "what": f"escalated to level {record['level']}", "by": "system"}
    )


def closed(cases: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    case = cases.get(record["case_id"])
    if case is None or case["status"] == CLOSED:
        return dict(cases)
    at = int(record["envelope"]["occurred_at"])
    changed = {**case, "status": CLOSED, "outcome": record["outcome"], "closed_at": at}
    entry = {
        "at": at,
        "what": f"closed: {record['outcome']} ({record.get('note') or ''})",
        "by": record["by"],
    }
    return _changed(cases, changed, entry)


def check_close(case: Mapping[str, Any], outcome: str, terms: CaseTerms) -> None:
    if case["status"] == CLOSED:
        raise CaseRefused(f"case {case['case_id']} is closed ({case.get('outcome')})")
    allowed = terms.types[case["type"]].outcomes
    if outcome not in allowed:
        raise CaseRefused(f"a {case['type']} case closes as one of {list(allowed)}")


def due_escalations(
    cases: Mapping[str, Any], now_ms: int, terms: CaseTerms
) -> list[tuple[str, int]]:
    """(case_id, next level) for each open case past its due time, below the top level."""
    return [
        (case_id, case["level"] + 1)
        for case_id, case in cases.items()
        if case["status"] == OPEN and case["due_at"] <= now_ms and case["level"] < terms.max_level
    ]


def next_due_at(cases: Mapping[str, Any], terms: CaseTerms) -> int | None:
    dues = [
        case["due_at"]
        for case in cases.values()
        if case["status"] == OPEN and case["level"] < terms.max_level
    ]
    return min(dues, default=None)


def overdue(case: Mapping[str, Any], now_ms: int) -> bool:
    return case["status"] == OPEN and case["due_at"] <= now_ms


DISPUTE_TYPE = "dispute"
DISPUTE_PAYERS = frozenset({"SELLER", "PLATFORM", "CARRIER"})
# a dispute case's outcomes that are an agent's ruling (the saga pays any difference)
RULINGS = {
    "full_refund": "FULL_REFUND",
    "partial_refund": "PARTIAL_REFUND",
    "goodwill": "GOODWILL",
    "upheld": "UPHELD",
}


def dispute_ruling(
    case: Mapping[str, Any], outcome: str, amount_minor: int | None, liable: str | None
) -> dict[str, Any] | None:
    """The DisputeRuled body an agent's closing of a dispute's case makes (None: not a
    ruling); CaseRefused when a ruling lacks what it needs."""
    facts = case.get("facts") or {}
    if case["type"] != DISPUTE_TYPE or outcome not in RULINGS or not facts.get("dispute_id"):
        if amount_minor is not None or liable is not None:
            raise CaseRefused("refund_minor and liable belong to a dispute's ruling only")
        return None
    decision = RULINGS[outcome]
    needs_amount = decision in ("PARTIAL_REFUND", "GOODWILL")
    if needs_amount and amount_minor is None:
        raise CaseRefused(f"{outcome} needs refund_minor (in {facts.get('currency')})")
    return {
        "dispute_id": facts["dispute_id"],
        "case_id": case["case_id"],
        "decision": decision,
        "amount": (
            {"amount_minor": amount_minor, "currency": str(facts.get("currency") or "")}
            if needs_amount
            else None
        ),
        "liable": liable,
    }


def dispute_case(cases: Mapping[str, Any], dispute_id: str) -> dict[str, Any] | None:
    """The case opened for a dispute (its ticket's facts name it)."""
    for case in cases.values():
        facts = case.get("facts") or {}
        if case["type"] == DISPUTE_TYPE and facts.get("dispute_id") == dispute_id:
            return case
    return None
