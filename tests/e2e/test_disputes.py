"""A buyer disputes how a return was decided (real Kafka, real PostgreSQL, every service an OS
process, the partner doubles over HTTP): the return is re-inspected at another station (the
first is refused) and the damage deduction is refunded once, with its own key, booked by
settlement with the party that pays; or an agent rules through the dispute's case."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from psycopg import AsyncConnection

from services.decisions.cases.case_file import case_id_of
from services.tools.local_stack.demo_settlement import ledger_figures
from services.tools.local_stack.stack import LocalStack
from tests.e2e.scenario import (
    as_buyer_of,
    create_return,
    post_scan,
    post_scan_when_ready,
    scan,
    signed_in,
    status,
    wait_for_status,
)
from tests.e2e.test_notifications import wait_for_messages


def graded(return_id: str, grade: str, station: str = "ST-1", scan_id: str | None = None):
    body, headers = scan(return_id, scan_id=scan_id, station=station)
    body["items"] = [{**item, "grade": grade} for item in body["items"]]
    return body, headers


def deducted_completion(http: httpx.Client, stack: LocalStack) -> tuple[str, dict[str, Any]]:
    """A remorse return the first station graded C (damaged by the buyer): refunded less the
    policy's damage deduction."""
    return_id = create_return(http, stack)
    body, headers = graded(return_id, "C")
    assert post_scan_when_ready(http, stack, body, headers, timeout=60).status_code == 202
    view = wait_for_status(http, stack, return_id, {"COMPLETED"}, timeout=90)
    deduction = sum(line["damage_deduction_minor"] for line in view["refund"]["breakdown"])
    assert deduction > 0, view["refund"]
    return return_id, {"deduction": deduction, "paid": view["refund"]["amount"]["amount_minor"]}


def dispute(http: httpx.Client, stack: LocalStack, return_id: str, **body: Any) -> httpx.Response:
    url = f"{stack.url('returns')}/returns/{return_id}/disputes"
    asked = {"reason": "GRADE_WRONG", "details": "it was sealed", **body}
    return http.post(url, json=asked, headers=as_buyer_of(http, stack, return_id))


def wait_for_dispute(
    http: httpx.Client, stack: LocalStack, return_id: str, wanted: set[str], timeout: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view = status(http, stack, return_id) or {}
        if (view.get("dispute") or {}).get("status") in wanted:
            return view
        assert time.monotonic() < deadline, view.get("dispute")
        time.sleep(0.3)


def psp_refunds(http: httpx.Client, stack: LocalStack, return_id: str) -> list[dict[str, Any]]:
    listed = http.get(f"{stack.url('psp')}/refunds", params={"return_id": return_id})
    return listed.json()["refunds"]


async def steps_of(database_url: str, return_id: str) -> list[str]:
    async with await AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT step FROM journal_entries WHERE return_id = %s ORDER BY step", (return_id,)
        )
        return [step for (step,) in await cursor.fetchall()]


def wait_for_steps(stack: LocalStack, return_id: str, wanted: set[str], timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not wanted <= set(steps := asyncio.run(steps_of(stack.database_url, return_id))):
        assert time.monotonic() < deadline, steps
        time.sleep(0.5)
    return steps


def test_a_dispute_is_reinspected_elsewhere_and_the_deduction_refunded_once_and_settled(
    stack, http
):
    return_id, first = deducted_completion(http, stack)
    asked = dispute(http, stack, return_id)
    assert asked.status_code == 202, asked.text
    view = wait_for_dispute(http, stack, return_id, {"OPEN"})
    assert view["status"] == "DISPUTED"
    # the station that graded it first may not inspect it again
    body, headers = graded(return_id, "B")
    deadline = time.monotonic() + 60
    while (refused := post_scan(http, stack, body, headers)).json().get("error") != "same_station":
        assert refused.status_code == 409 and time.monotonic() < deadline, refused.text
        time.sleep(0.3)
    body, headers = graded(return_id, "B", station="ST-2")
    assert post_scan(http, stack, body, headers).status_code == 202
    view = wait_for_dispute(http, stack, return_id, {"DECIDED"})
    assert view["status"] == "COMPLETED"
    decided = view["dispute"]
    assert (decided["decision"], decided["decided_by"]) == ("PARTIAL_REFUND", "reinspection")
    assert decided["refunded_minor"] == first["deduction"]
    # the same dispute again, or another one: nothing more is paid
    assert dispute(http, stack, return_id).status_code == 202
    assert dispute(http, stack, return_id, reason="OTHER").status_code == 202
    time.sleep(3)
    refunds = psp_refunds(http, stack, return_id)
    keys = sorted(refund["idempotency_key"] for refund in refunds)
    assert keys == [f"{return_id}-dispute-1", f"{return_id}-refund-1"], keys
    [extra] = [r for r in refunds if r["idempotency_key"].endswith("-dispute-1")]
    assert extra["amount_minor"] == first["deduction"]
    # settlement: the refund by its key, the payer (the seller) by the dispute, once each
    steps = wait_for_steps(
        stack, return_id, {f"refund:{return_id}-dispute-1", f"dispute:{return_id}-D1"}
    )
    assert len(steps) == len(set(steps)), steps
    assert asyncio.run(ledger_figures(stack))["ledger_balanced"]
    wait_for_messages(http, stack, return_id, {("disputed", "buyer"), ("decided", "buyer")})
    # the dispute's case was closed by the re-inspection's decision
    agent = signed_in(http, stack, "agent-disputes", role="support")
    case_id = case_id_of(return_id, decided["ticket_id"])
    deadline = time.monotonic() + 60
    while (case := http.get(f"{stack.url('cases')}/cases/{case_id}", headers=agent)).json().get(
        "status"
    ) != "closed":
        assert time.monotonic() < deadline, case.text
        time.sleep(0.5)
    assert case.json()["outcome"] == "decided_by_reinspection"


def test_an_agent_rules_goodwill_through_the_disputes_case_and_the_platform_pays(stack, http):
    return_id, first = deducted_completion(http, stack)
    assert dispute(http, stack, return_id, reason="DAMAGE_NOT_MINE").status_code == 202
    view = wait_for_dispute(http, stack, return_id, {"OPEN"})
    agent = signed_in(http, stack, "agent-goodwill", role="support")
    case_id = case_id_of(return_id, view["dispute"]["ticket_id"])
    url = f"{stack.url('cases')}/cases/{case_id}"
    deadline = time.monotonic() + 60
    while http.get(url, headers=agent).status_code == 404:  # the case is opened from the ticket
        assert time.monotonic() < deadline
        time.sleep(0.3)
    ruling = {"outcome": "goodwill", "refund_minor": 300, "note": "a loyal buyer"}
    closed = http.post(f"{url}/close", json=ruling, headers=agent)
    assert closed.status_code == 202, closed.text
    view = wait_for_dispute(http, stack, return_id, {"DECIDED"})
    decided = view["dispute"]
    assert (decided["decision"], decided["liable"], decided["refunded_minor"]) == (
        "GOODWILL",
        "PLATFORM",
        300,
    )
    assert decided["decided_by"] == "agent:agent-goodwill"
    # a re-inspection after the ruling decides nothing
    body, headers = graded(return_id, "A", station="ST-2")
    assert post_scan(http, stack, body, headers).status_code == 409
    wait_for_steps(stack, return_id, {f"refund:{return_id}-dispute-1", f"dispute:{return_id}-D1"})
    assert sum(r["amount_minor"] for r in psp_refunds(http, stack, return_id)) == (
        first["paid"] + 300
    )
