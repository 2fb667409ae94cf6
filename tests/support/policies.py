"""The repository's policy files (deploy/policies), as the services load them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from services.policy_files.loader import PolicySet, load_policy_set, policy_dir
from services.returns.return_policy import PolicyFileRules


@dataclass
class FixedPolicies:
    current: PolicySet


@cache
def deployed_policies() -> PolicySet:
    return load_policy_set(policy_dir())


def deployed_rules() -> PolicyFileRules:
    return PolicyFileRules(FixedPolicies(deployed_policies()))
