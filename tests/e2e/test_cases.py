"""Support cases through real processes: a rejected inspection's ticket opens a case (the
cases service reads the tickets topic), it escalates once past its SLA (seconds in the e2e
terms), and an agent assigns and closes it with `boomerang cases` (the CLI over HTTP)."""

from __future__ import annotations

import json
import time

from services.tools.local_stack.stack import LocalStack
from tests.e2e.scenario import signed_in, wait_for_status
from tests.e2e.test_faults import _through_inspection
from tests.support.cli_process import run_cli


def agent_cli(stack: LocalStack, token: str, *args: str):
    return run_cli(
        stack.bootstrap,
        "cases",
        "--url",
        stack.url("cases"),
        "--token",
        token,
        *args,
        operator="e2e-agent",
    )


def test_a_case_past_its_sla_escalates_and_an_agent_closes_it(stack, http):
    return_id = _through_inspection(http, stack, matches_order=False)
    view = wait_for_status(http, stack, return_id, {"REJECTED"}, timeout=60)
    ticket_id = view["outcome"]["ticket_id"]
    agent = signed_in(http, stack, "agent-7", role="support")
    token = agent["Authorization"].split()[1]
    case_id = f"{return_id}.{ticket_id[:8]}"
    deadline = time.monotonic() + 60
    while True:  # opened, then past its 3.6 s SLA: escalated (to level 2 at most)
        answer = http.get(f"{stack.url('cases')}/cases/{case_id}", headers=agent)
        if answer.status_code == 200 and answer.json()["level"] >= 1:
            break
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.5)
    case = answer.json()
    assert (case["type"], case["category"], case["market"]) == (
        "inspection",
        "inspection-rejected",
        "DE",
    )
    assert case["overdue"] in (True, False) and case["history"][1]["what"].startswith("escalated")
    listed = agent_cli(stack, token, "list", "--status", "all", "--type", "inspection", "--json")
    assert listed.returncode == 0, listed.stderr
    assert case_id in {c["case_id"] for c in json.loads(listed.stdout)["cases"]}
    assigned = agent_cli(stack, token, "assign", case_id, "agent-9")
    assert assigned.returncode == 0 and "assigned to agent-9" in assigned.stdout, assigned.stderr
    wrong = agent_cli(stack, token, "close", case_id, "--outcome", "paid")
    assert wrong.returncode != 0 and "422" in wrong.stderr  # not an inspection outcome
    closed = agent_cli(
        stack, token, "close", case_id, "--outcome", "upheld", "--note", "wrong item"
    )
    assert closed.returncode == 0, closed.stderr
    deadline = time.monotonic() + 30
    while (shown := agent_cli(stack, token, "show", case_id, "--json")).returncode == 0:
        case = json.loads(shown.stdout)
        if case["status"] == "closed":
            break
        assert time.monotonic() < deadline, case
        time.sleep(0.5)
    assert (case["outcome"], case["assignee"]) == ("upheld", "agent-9")
    by_agents = [e["what"] for e in case["history"] if e["by"] == "agent-7"]
    assert by_agents == ["assigned to agent-9", "closed: upheld (wrong item)"]
    buyer = signed_in(http, stack, view["request"]["buyer_id"])
    refused = http.get(f"{stack.url('cases')}/cases", headers=buyer)
    assert (refused.status_code, refused.json()["error"]) == (403, "support_only")
    metrics = http.get(f"{stack.url('cases')}/metrics").text
    assert 'boomerang_cases_escalated_total{level="1",type="inspection"}' in metrics
    assert 'boomerang_cases_closed_total{outcome="upheld",type="inspection"}' in metrics
