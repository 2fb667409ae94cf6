"""Policy layers as data: one file's rules (market, category, seller or buyer layer) and the set of
layers a deployment runs with. Loading and validating the files is `services.policy_files`."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any


@dataclass(frozen=True)
class PolicyProblem:
    file: str
    path: str  # where in the file, e.g. rules.reasons.DEFECTIVE.family
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path or '(top)'}: {self.problem}"


class PolicyError(ValueError):
    """One or more policy files are invalid; `problems` says where and why."""

    def __init__(self, problems: list[PolicyProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


@dataclass(frozen=True)
class PolicyLayer:
    file: str
    market: str
    category: str | None
    seller: str | None
    version: int
    rules: dict[str, Any]
    currency: str | None = None
    description: str = ""
    buyer: str | None = None  # a buyer's own layer (risk generates it)

    @property
    def kind(self) -> str:
        if self.buyer:
            return "buyer"
        return "seller" if self.seller else "category" if self.category else "market"

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.market, self.category or "", self.seller or "", self.buyer or "")

    @property
    def label(self) -> str:
        name = self.buyer or self.seller or self.category or "default"
        return f"{self.market}/{self.kind}:{name}@v{self.version}"


@dataclass(frozen=True)
class PolicySet:
    layers: tuple[PolicyLayer, ...]
    digest: str = field(default="")  # changes whenever any layer changes

    def market_layer(self, market: str) -> PolicyLayer | None:
        return self._by_key.get((market, "", "", ""))

    def category_layer(self, market: str, category: str) -> PolicyLayer | None:
        return self._by_key.get((market, category, "", ""))

    def seller_layer(self, market: str, seller: str) -> PolicyLayer | None:
        return self._by_key.get((market, "", seller, ""))

    def buyer_layer(self, market: str, buyer: str) -> PolicyLayer | None:
        return self._by_key.get((market, "", "", buyer))

    @cached_property
    def _by_key(self) -> dict[tuple[str, str, str, str], PolicyLayer]:
        """The layers by scope (the first of a scope named twice: a set with one is refused
        on load), so a lookup does not read every layer (buyers' layers can be many)."""
        found: dict[tuple[str, str, str, str], PolicyLayer] = {}
        for layer in self.layers:
            found.setdefault(layer.key, layer)
        return found

    @property
    def markets(self) -> list[str]:
        return sorted({layer.market for layer in self.layers if layer.kind == "market"})
