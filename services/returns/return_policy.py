"""The policy check at the front door (pure). A minimal policy for now — return window and
non-returnable categories — behind a small interface the rules engine will implement."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from services.returns.return_request import ReturnRequest

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class PolicyDecision:
    accepted: bool
    policy_version: str
    rules_fired: tuple[str, ...] = ()
    rejection_code: str = ""
    detail: str = ""


class ReturnPolicy(Protocol):
    def decide(self, request: ReturnRequest, now_ms: int) -> PolicyDecision: ...


@dataclass(frozen=True)
class MinimalPolicy:
    window_days: int = 30
    non_returnable_categories: frozenset[str] = field(
        default_factory=lambda: frozenset({"perishables", "digital_goods", "gift_cards"})
    )
    version: str = "minimal-1"

    def decide(self, request: ReturnRequest, now_ms: int) -> PolicyDecision:
        if request.category in self.non_returnable_categories:
            return PolicyDecision(
                False,
                self.version,
                ("category.non_returnable",),
                "NON_RETURNABLE_CATEGORY",
                f"category {request.category!r} cannot be returned",
            )
        if request.delivered_at_ms > now_ms + DAY_MS:
            return PolicyDecision(
                False,
                self.version,
                ("window.delivered_in_future",),
                "NOT_DELIVERED",
                "delivered_at is in the future",
            )
        age_days = (now_ms - request.delivered_at_ms) // DAY_MS
        if age_days > self.window_days:
            return PolicyDecision(
                False,
                self.version,
                ("window.expired",),
                "OUTSIDE_RETURN_WINDOW",
                f"delivered {age_days} days ago; the window is {self.window_days} days",
            )
        return PolicyDecision(True, self.version, ("window.open", "category.returnable"))
