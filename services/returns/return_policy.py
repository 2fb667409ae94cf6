"""The policy check at the front door (pure): the policy files decide, the return keeps the
effective policy it was accepted under (`policy_json`, named on ReturnAccepted by its
`policy_digest`) for its whole life."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import orjson

from services.decisions.policy.liability import RuleFired
from services.decisions.policy.policy_layers import PolicySet
from services.decisions.policy.policy_rules import (
    PolicyLookupError,
    RequestFacts,
    decide_request,
    policy_digest,
    resolve_policy,
)
from services.returns.return_request import ReturnRequest

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class PolicyDecision:
    accepted: bool
    policy_version: str
    rules: tuple[RuleFired, ...] = ()
    rejection_code: str = ""
    detail: str = ""
    policy_json: str | None = None  # the effective policy, for an accepted return
    reason_family: str | None = None

    @cached_property
    def policy_digest(self) -> str | None:
        """The name of the effective policy on ReturnAccepted (policy_rules.policy_digest)."""
        return None if self.policy_json is None else policy_digest(self.policy_json)

    @property
    def rules_fired(self) -> tuple[str, ...]:
        return tuple(rule.rule_id for rule in self.rules)

    def rule_records(self) -> list[dict[str, Any]]:
        """As in the ReturnAccepted/ReturnRejected `rules` field."""
        return [
            {
                "rule_id": rule.rule_id,
                "facts_json": orjson.dumps(rule.facts, option=orjson.OPT_SORT_KEYS).decode(),
                "effect": rule.effect,
            }
            for rule in self.rules
        ]


class ReturnPolicy(Protocol):
    def decide(self, request: ReturnRequest, now_ms: int) -> PolicyDecision: ...


def decide_return(policies: PolicySet, request: ReturnRequest, now_ms: int) -> PolicyDecision:
    try:
        policy = resolve_policy(
            policies, request.market, request.category, request.seller_id, request.buyer_id
        )
    except PolicyLookupError as exc:
        rule = RuleFired("policy.market", {"market": request.market}, str(exc))
        return PolicyDecision(
            False, f"set:{policies.digest}", (rule,), "MARKET_NOT_SERVED", str(exc)
        )
    if request.currency != policy.currency:
        rule = policy.rule(
            "currency",
            {"currency": request.currency, "market_currency": policy.currency},
            f"market {policy.market} refunds in {policy.currency}, not {request.currency}",
        )
        return PolicyDecision(False, policy.version, (rule,), "CURRENCY_NOT_OF_MARKET", rule.effect)
    decision = decide_request(
        policy,
        RequestFacts(
            request.category,
            request.reason_code,
            request.delivered_at_ms,
            now_ms,
            len(request.photo_refs),
        ),
    )
    if not decision.accepted:
        return PolicyDecision(
            False,
            policy.version,
            decision.rules_fired,
            decision.rejection_code,
            decision.detail,
        )
    return PolicyDecision(
        True,
        policy.version,
        decision.rules_fired,
        policy_json=orjson.dumps(policy.to_record(), option=orjson.OPT_SORT_KEYS).decode(),
        reason_family=str(decision.family),
    )


@dataclass
class PolicyFileRules:
    """Decides with whatever policy set `current()` gives (a PolicyBook's, reloaded live)."""

    policies: Any  # an object with a `current: PolicySet` attribute

    def decide(self, request: ReturnRequest, now_ms: int) -> PolicyDecision:
        return decide_return(self.policies.current, request, now_ms)
