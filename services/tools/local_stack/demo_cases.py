"""The run's support cases, worked by an agent at the end of a demo: every case of the
run's returns that is still open is closed with its type's first outcome (through the
cases service's API, as `boomerang cases close` would), then counted."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import httpx

from services.cases.app import load_terms


def work_cases(
    cases_url: str, marketplace_url: str, return_ids: Iterable[str], wait_s: float = 30.0
) -> dict[str, Any]:
    """`cases_opened`, `cases_closed`, `cases_escalated`, `cases_by_type` for the run."""
    mine = set(return_ids)
    terms = load_terms()
    signed = httpx.post(f"{marketplace_url}/support-agents/demo-agent/tokens", json={}, timeout=10)
    signed.raise_for_status()
    agent = {"Authorization": f"Bearer {signed.json()['token']}"}
    with httpx.Client(timeout=10.0, headers=agent) as http:

        def run_cases() -> list[dict[str, Any]]:
            listed = http.get(f"{cases_url}/cases", params={"status": "all"}).json()["cases"]
            return [case for case in listed if case["return_id"] in mine]

        for case in run_cases():
            if case["status"] == "open":
                outcome = terms.types[case["type"]].outcomes[0]
                http.post(
                    f"{cases_url}/cases/{case['case_id']}/close",
                    json={"outcome": outcome, "note": "demo: worked by the demo's agent"},
                ).raise_for_status()
        deadline = time.monotonic() + wait_s
        found = run_cases()
        while any(c["status"] == "open" for c in found) and time.monotonic() < deadline:
            time.sleep(0.5)
            found = run_cases()
    return {
        "cases_opened": len(found),
        "cases_closed": sum(1 for c in found if c["status"] == "closed"),
        "cases_escalated": sum(1 for c in found if c["level"] > 0),
        "cases_by_type": dict(sorted(Counter(c["type"] for c in found).items())),
    }
