"""Review cases (pure): a return the risk step held (no money until a person decides) or
queued for review (paid, then looked at), and what reviewers do with it.

A case is opened once per return and decision (its id derived from both). A reviewer's
verdict is idempotent: the same reviewer giving the same verdict again changes nothing; a
verdict on a case already decided otherwise is refused (a second person disagreeing is a
new case, not an overwrite). A held case past its deadline is escalated to a person (a
ticket), never approved or denied by itself.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from enum import StrEnum

from services.decisions.risk.rule_sets import Decision, Outcome
from services.decisions.visible_text import has_visible

CASE_NAMESPACE = uuid.UUID("6b1d3c52-0f61-4e53-9a33-2a0a3f0e9c41")
MIN_REASON = 5  # characters: a verdict says why
MAX_REASON = 2000


def reason_is_given(reason: object) -> bool:
    """A verdict's reason: MIN_REASON to MAX_REASON characters, not only blanks."""
    return (
        isinstance(reason, str) and MIN_REASON <= len(reason) <= MAX_REASON and has_visible(reason)
    )


class CaseStatus(StrEnum):
    OPEN = "open"
    ESCALATED = "escalated"  # past its deadline: a person was told, still open
    APPROVED = "approved"  # the money moves (a held return) / nothing to do (a review)
    DENIED = "denied"  # the return is rejected with the reviewer's reason


class VerdictRefused(ValueError):
    """A verdict that cannot be taken (the message says why)."""


@dataclass(frozen=True)
class ReviewCase:
    case_id: str
    return_id: str
    held: bool  # True: no money until decided; False: paid, reviewed afterwards
    decision: Decision
    opened_at_ms: int
    deadline_ms: int
    status: CaseStatus = CaseStatus.OPEN
    reviewer: str = ""
    reason: str = ""
    decided_at_ms: int | None = None

    @property
    def decided(self) -> bool:
        return self.status in (CaseStatus.APPROVED, CaseStatus.DENIED)


def case_id(return_id: str, decision: Decision) -> str:
    """The same return decided by the same rule set version: the same case."""
    return str(uuid.uuid5(CASE_NAMESPACE, f"{return_id}/{decision.rule_set}/{decision.version}"))


def open_case(
    return_id: str, decision: Decision, now_ms: int, review_hours: int
) -> ReviewCase | None:
    """A case for a held or reviewed return (None for approve and decline: no person needed)."""
    if decision.outcome not in (Outcome.HOLD, Outcome.REVIEW):
        return None
    return ReviewCase(
        case_id(return_id, decision),
        return_id,
        decision.outcome is Outcome.HOLD,
        decision,
        now_ms,
        now_ms + review_hours * 3_600_000,
    )


def give_verdict(
    case: ReviewCase, approve: bool, reviewer: str, reason: str, now_ms: int
) -> ReviewCase:
    """The case after a reviewer's verdict (unchanged when it repeats the one given)."""
    given = (case.status.value, case.reviewer) if case.decided else None
    if not verdict_is_new(given, approve, reviewer, reason):
        return case  # the same verdict again: nothing changes
    wanted = CaseStatus.APPROVED if approve else CaseStatus.DENIED
    return replace(
        case, status=wanted, reviewer=reviewer, reason=reason.strip(), decided_at_ms=now_ms
    )


def verdict_is_new(
    given: tuple[str, str] | None, approve: bool, reviewer: str, reason: str
) -> bool:
    """Whether a verdict is to be taken (True), repeats the one `given` ((status,
    reviewer); False: nothing changes), or is refused (VerdictRefused says why)."""
    if not reviewer:
        raise VerdictRefused("a verdict needs the reviewer's name")
    if not reason_is_given(reason):
        raise VerdictRefused(
            f"a verdict says why ({MIN_REASON} to {MAX_REASON} characters, not only blanks)"
        )
    if given is None:
        return True
    wanted = (CaseStatus.APPROVED if approve else CaseStatus.DENIED).value
    if given == (wanted, reviewer):
        return False
    raise VerdictRefused(f"the case was {given[0]} by {given[1]}: open a new case")


def escalate_overdue(case: ReviewCase, now_ms: int) -> ReviewCase:
    """A case past its deadline and still open goes to a person (escalated, still open)."""
    if case.status is CaseStatus.OPEN and now_ms >= case.deadline_ms:
        return replace(case, status=CaseStatus.ESCALATED)
    return case
