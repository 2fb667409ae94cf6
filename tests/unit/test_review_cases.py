"""Review cases (pure): opened once per return and rule set version for held and reviewed
returns, verdicts idempotent and never overwritten, overdue cases escalated to a person."""

from __future__ import annotations

import pytest

from services.decisions.risk.review_cases import (
    CaseStatus,
    VerdictRefused,
    escalate_overdue,
    give_verdict,
    open_case,
)
from services.decisions.risk.rule_sets import Decision, Outcome

HOUR = 3_600_000


def decision(outcome: Outcome, version: int = 1) -> Decision:
    return Decision("risk", version, outcome, 70, ())


def test_only_held_and_reviewed_returns_open_a_case_and_the_same_one_twice() -> None:
    assert open_case("R-1", decision(Outcome.APPROVE), 0, 24) is None
    assert open_case("R-1", decision(Outcome.DECLINE), 0, 24) is None
    held = open_case("R-1", decision(Outcome.HOLD), 0, 24)
    again = open_case("R-1", decision(Outcome.HOLD), 5, 24)
    assert held is not None and again is not None
    assert held.case_id == again.case_id and held.held and held.deadline_ms == 24 * HOUR
    other_version = open_case("R-1", decision(Outcome.HOLD, version=2), 0, 24)
    assert other_version is not None and other_version.case_id != held.case_id
    review = open_case("R-2", decision(Outcome.REVIEW), 0, 24)
    assert review is not None and not review.held


def test_a_verdict_is_idempotent_and_never_overwritten() -> None:
    case = open_case("R-1", decision(Outcome.HOLD), 0, 24)
    assert case is not None
    approved = give_verdict(case, True, "rev-ana", "photos show the item intact", HOUR)
    assert (approved.status, approved.reviewer, approved.decided_at_ms) == (
        CaseStatus.APPROVED,
        "rev-ana",
        HOUR,
    )
    assert give_verdict(approved, True, "rev-ana", "again, same", 2 * HOUR) == approved
    with pytest.raises(VerdictRefused, match="open a new case"):
        give_verdict(approved, False, "rev-bob", "I disagree entirely", 2 * HOUR)
    with pytest.raises(VerdictRefused, match="says why"):
        give_verdict(case, False, "rev-bob", "no", HOUR)
    with pytest.raises(VerdictRefused, match="name"):
        give_verdict(case, False, "", "no reason given", HOUR)


def test_an_overdue_case_goes_to_a_person_and_can_still_be_decided() -> None:
    case = open_case("R-1", decision(Outcome.HOLD), 0, 24)
    assert case is not None
    assert escalate_overdue(case, 23 * HOUR).status is CaseStatus.OPEN
    late = escalate_overdue(case, 24 * HOUR)
    assert late.status is CaseStatus.ESCALATED  # never approved or denied by itself
    assert escalate_overdue(late, 48 * HOUR) == late
    denied = give_verdict(late, False, "rev-cho", "empty box confirmed on camera", 30 * HOUR)
    assert denied.status is CaseStatus.DENIED
    assert escalate_overdue(denied, 99 * HOUR) == denied
