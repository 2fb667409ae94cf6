"""Policy layers as data: one file's rules (market, category or seller layer) and the set of
layers a deployment runs with. Loading and validating the files is `services.policy_files`."""

from __future__ import annotations

from dataclasses import dataclass, field
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

    @property
    def kind(self) -> str:
        return "seller" if self.seller else "category" if self.category else "market"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.market, self.category or "", self.seller or "")

    @property
    def label(self) -> str:
        name = self.seller or self.category or "default"
        return f"{self.market}/{self.kind}:{name}@v{self.version}"


@dataclass(frozen=True)
class PolicySet:
    layers: tuple[PolicyLayer, ...]
    digest: str = field(default="")  # changes whenever any layer changes

    def market_layer(self, market: str) -> PolicyLayer | None:
        return next((layer for layer in self.layers if layer.key == (market, "", "")), None)

    def category_layer(self, market: str, category: str) -> PolicyLayer | None:
        return next((lyr for lyr in self.layers if lyr.key == (market, category, "")), None)

    def seller_layer(self, market: str, seller: str) -> PolicyLayer | None:
        return next((lyr for lyr in self.layers if lyr.key == (market, "", seller)), None)

    @property
    def markets(self) -> list[str]:
        return sorted({layer.market for layer in self.layers if layer.kind == "market"})
