"""Support cases (pure core and handlers, no broker): a ticket opens one case with its
type's SLA in its market, escalation when overdue (once per level, bounded), assignment,
closing with an outcome of its type; the deployed terms are valid."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from services.cases import handlers
from services.cases.app import load_terms
from services.cases.handlers import CasesPorts
from services.decisions.cases import case_file
from services.decisions.cases.case_terms import HOUR_MS, CaseTermsError, parse_case_terms
from services.eventing.handler_contract import HttpRequest, Incoming
from services.eventing.request_fields import ApiError
from tests.support.buyer_signin import authenticate, bearer
from tests.support.fake_partners import Published

NOW = 1_790_000_000_000
TERMS = load_terms()
RID = "RMA-CASE-1"


def ticket(category: str = "refund-declined", market: str = "DE", n: int = 1) -> dict:
    return {
        "envelope": {"event_id": f"t-{n}", "return_id": RID, "occurred_at": NOW},
        "ticket_id": f"{n:08d}-aaaa",
        "category": category,
        "summary": "the card account is closed",
        "facts": {"market": market, "return_id": RID},
    }


def test_the_deployed_terms_read_and_every_saga_category_has_a_type():
    assert set(TERMS.types) == {"inspection", "refund", "risk", "dispute", "operations"}
    assert TERMS.type_of("dispute").sla_ms("DE") == 48 * HOUR_MS
    assert TERMS.type_of("refund-declined").sla_ms("DE") == 12 * HOUR_MS
    assert TERMS.type_of("refund-declined").sla_ms("FR") == 24 * HOUR_MS
    assert TERMS.type_of("something-new").name == "operations"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["types"]["refund"].pop("outcomes"), "outcomes"),
        (lambda d: d["types"]["risk"]["sla_hours"].pop("default"), "needs a default"),
        (lambda d: d["types"]["risk"]["categories"].append("refund-declined"), "is in"),
        (lambda d: d.update(max_level=0), "max_level"),
        (lambda d: d["types"]["operations"].update(categories=["x"]), '("*")'),
    ],
)
def test_wrong_terms_are_refused_naming_the_problem(change, problem):
    data = yaml.safe_load(Path("deploy/cases/terms.yaml").read_text())
    change(data)
    with pytest.raises(CaseTermsError) as refused:
        parse_case_terms(data)
    assert problem in str(refused.value)


def test_a_ticket_opens_one_case_due_at_its_sla():
    cases = case_file.opened({}, ticket(), TERMS)
    again = case_file.opened(cases, ticket(), TERMS)
    assert again == cases and len(cases) == 1
    [case] = cases.values()
    assert case["case_id"] == f"{RID}.00000001"
    assert case_file.return_id_of(case["case_id"]) == RID
    assert (case["type"], case["due_at"], case["level"]) == ("refund", NOW + 12 * HOUR_MS, 0)


def escalation(case_id: str, level: int, at: int) -> dict:
    return {"envelope": {"occurred_at": at}, "case_id": case_id, "level": level}


@settings(max_examples=100, deadline=None)
@given(ticks=st.lists(st.integers(0, 30 * HOUR_MS), min_size=1, max_size=20))
def test_an_overdue_case_escalates_once_per_level_up_to_the_top(ticks):
    cases = case_file.opened({}, ticket(), TERMS)
    now = NOW
    for tick in ticks:
        now += tick
        for case_id, level in case_file.due_escalations(cases, now, TERMS):
            event = escalation(case_id, level, now)
            cases = case_file.escalated(cases, event, TERMS)
            assert case_file.escalated(cases, event, TERMS) == cases  # again: nothing
    [case] = cases.values()
    assert 0 <= case["level"] <= TERMS.max_level
    assert [e["what"] for e in case["history"][1:]] == [
        f"escalated to level {n}" for n in range(1, case["level"] + 1)
    ]


def test_a_closed_case_takes_nothing_more_and_outcomes_are_the_types():
    cases = case_file.opened({}, ticket(), TERMS)
    case_id = next(iter(cases))
    with pytest.raises(case_file.CaseRefused):
        case_file.check_close(cases[case_id], "upheld", TERMS)  # an inspection outcome
    close = {"envelope": {"occurred_at": NOW + 5}, "case_id": case_id, "outcome": "paid", "by": "a"}
    cases = case_file.closed(cases, close)
    assert cases[case_id]["status"] == "closed" and cases[case_id]["closed_at"] == NOW + 5
    assert case_file.due_escalations(cases, NOW + 100 * HOUR_MS, TERMS) == []
    assign = {"envelope": {"occurred_at": NOW + 6}, "case_id": case_id, "assignee": "b", "by": "a"}
    assert case_file.assigned(cases, assign) == cases
    with pytest.raises(case_file.CaseRefused, match="closed"):
        case_file.check_close(cases[case_id], "paid", TERMS)


def ports() -> CasesPorts:
    return CasesPorts({}, TERMS, Published(), lambda: NOW, authenticate)


def deliver(wired: CasesPorts, name: str, record: dict) -> None:
    asyncio.run(handlers.take(wired, Incoming(name, record, RID.encode())))


def agent_request(body: dict | None = None, query: dict | None = None, who: str = "agent-1"):
    raw = json.dumps(body).encode() if body is not None else b""
    return HttpRequest(raw, bearer(who, NOW, role="support"), query or {})


def test_the_handlers_open_list_assign_close_and_escalate():
    wired = ports()
    deliver(wired, "TicketOpened", ticket())
    deliver(wired, "TicketOpened", ticket("inspection-rejected", n=2))
    listed = asyncio.run(handlers.list_cases(wired, agent_request(query={"status": "open"})))
    assert [c["type"] for c in listed.body["cases"]] == ["refund", "inspection"]  # due first
    case_id = f"{RID}.00000001"
    answer = asyncio.run(
        handlers.assign_case(wired, agent_request({"assignee": "agent-9"}), case_id)
    )
    assert answer.status == 202
    name, record = wired.publish.records[-1][:2]
    assert (name, record["assignee"], record["by"]) == ("CaseAssigned", "agent-9", "agent-1")
    deliver(wired, name, record)
    with pytest.raises(ApiError) as refused:
        asyncio.run(handlers.close_case(wired, agent_request({"outcome": "upheld"}), case_id))
    assert (refused.value.status, refused.value.code) == (422, "case_refused")
    asyncio.run(handlers.close_case(wired, agent_request({"outcome": "paid"}), case_id))
    deliver(wired, *wired.publish.records[-1][:2])
    shown = asyncio.run(handlers.show_case(wired, agent_request(), case_id)).body
    assert (shown["status"], shown["assignee"], shown["outcome"]) == ("closed", "agent-9", "paid")
    with pytest.raises(ApiError) as again:
        asyncio.run(handlers.close_case(wired, agent_request({"outcome": "paid"}), case_id))
    assert again.value.status == 409
    wired.clock_ms = lambda: NOW + 49 * HOUR_MS  # the inspection case's 24 h SLA (DE) passed
    [(name, escalated)] = handlers.due_escalations(wired)
    assert (name, escalated["level"], escalated["case_type"]) == ("CaseEscalated", 1, "inspection")
    deliver(wired, name, escalated)
    assert handlers.due_escalations(wired) == []  # the next level is due 8 h later


def test_only_support_agents_work_cases():
    wired = ports()
    buyer = HttpRequest(b"", bearer("B-1", NOW))
    with pytest.raises(ApiError) as refused:
        asyncio.run(handlers.list_cases(wired, buyer))
    assert (refused.value.status, refused.value.code) == (403, "support_only")
    with pytest.raises(ApiError) as anonymous:
        asyncio.run(handlers.list_cases(wired, HttpRequest(b"")))
    assert anonymous.value.status == 401
    with pytest.raises(ApiError) as unknown:
        asyncio.run(handlers.show_case(wired, agent_request(), "RMA-NONE.00000000"))
    assert unknown.value.status == 404


def dispute_ticket() -> dict:
    return {
        **ticket("dispute", n=7),
        "facts": {
            "market": "DE",
            "return_id": RID,
            "dispute_id": f"{RID}-D1",
            "currency": "EUR",
            "kept_minor": "990",
        },
    }


def test_an_agents_ruling_on_a_dispute_goes_to_the_saga_with_the_case_closed():
    wired = ports()
    deliver(wired, "TicketOpened", dispute_ticket())
    case_id = f"{RID}.00000007"
    close = handlers.close_case
    with pytest.raises(ApiError) as refused:  # a partial refund needs its amount
        asyncio.run(close(wired, agent_request({"outcome": "partial_refund"}), case_id))
    assert (refused.value.status, refused.value.code) == (422, "case_refused")
    body = {"outcome": "partial_refund", "refund_minor": 500, "liable": "PLATFORM", "note": "ok"}
    assert asyncio.run(close(wired, agent_request(body), case_id)).status == 202
    [(closed_name, closed), (ruled_name, ruled)] = [r[:2] for r in wired.publish.records]
    assert (closed_name, closed["outcome"]) == ("CaseClosed", "partial_refund")
    assert ruled_name == "DisputeRuled"
    assert (ruled["dispute_id"], ruled["decision"], ruled["liable"], ruled["agent_id"]) == (
        f"{RID}-D1",
        "PARTIAL_REFUND",
        "PLATFORM",
        "agent-1",
    )
    assert ruled["amount"] == {"amount_minor": 500, "currency": "EUR"}
    deliver(wired, closed_name, closed)
    decided = {
        "envelope": {"event_id": "d-1", "return_id": RID, "occurred_at": NOW},
        "dispute_id": f"{RID}-D1",
        "decided_by": "reinspection",
        "decision": "UPHELD",
    }
    incoming = Incoming("DisputeDecided", decided, RID.encode())
    assert asyncio.run(handlers.dispute_decided(wired, incoming)) == []  # closed already


def test_a_dispute_the_reinspection_decided_closes_its_case():
    wired = ports()
    deliver(wired, "TicketOpened", dispute_ticket())
    decided = {
        "envelope": {"event_id": "d-1", "return_id": RID, "occurred_at": NOW},
        "dispute_id": f"{RID}-D1",
        "decided_by": "reinspection",
        "decision": "PARTIAL_REFUND",
    }
    incoming = Incoming("DisputeDecided", decided, RID.encode())
    [(name, record)] = asyncio.run(handlers.dispute_decided(wired, incoming))
    assert (name, record["outcome"], record["by"]) == (
        "CaseClosed",
        "decided_by_reinspection",
        "reinspection",
    )
    with pytest.raises(ApiError) as refused:  # amounts belong to a dispute's ruling only
        body = {"outcome": "resolved", "refund_minor": 5}
        deliver(wired, "TicketOpened", ticket("something-else", n=8))
        asyncio.run(handlers.close_case(wired, agent_request(body), f"{RID}.00000008"))
    assert refused.value.status == 422
