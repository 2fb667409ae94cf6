"""Fault plans for the partner doubles (pure; no I/O, no web framework).

A plan says how badly a double misbehaves on the operations that change something:

- `error_rate`: probability of answering 503 before doing anything;
- `latency_ms`: delay added before the operation;
- `ghost_rate`: probability that the operation IS performed and recorded but the answer is a
  503 anyway ("the call succeeded, the caller never heard");
- `seed`: seeds the plan's own `random.Random`, so a chaos run can be replayed exactly.

Each double extends `FaultPlan` with its own fields (declared with `rate_field`,
`count_field`, `codes_field`), and gets JSON loading, partial updates and validation for free.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Self

MAX_LATENCY_MS = 120_000

# what a field accepts; the metadata key that holds it
_KIND = "fault_kind"
_RATE = "rate"
_COUNT = "count"
_CODES = "codes"
_SEED = "seed"


class FaultPlanError(ValueError):
    """A fault plan, or an update to one, was refused; the message says which field and why."""


def rate_field(default: float = 0.0) -> Any:
    """A probability, 0..1."""
    return field(default=default, metadata={_KIND: _RATE})


def count_field(default: int = 0, *, maximum: int) -> Any:
    """A whole number, 0..maximum."""
    return field(default=default, metadata={_KIND: _COUNT, "maximum": maximum})


def codes_field(default: tuple[str, ...]) -> Any:
    """A non-empty list of non-empty strings (kept as a tuple)."""
    return field(default=default, metadata={_KIND: _CODES})


@dataclass
class FaultPlan:
    error_rate: float = rate_field()
    latency_ms: int = count_field(maximum=MAX_LATENCY_MS)
    ghost_rate: float = rate_field()
    seed: int | None = field(default=None, metadata={_KIND: _SEED})
    rng: random.Random = field(init=False, repr=False, compare=False, default_factory=random.Random)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @classmethod
    def from_json(cls, text: str | None) -> Self:
        """The plan in `text` (a JSON object, e.g. from an env var); empty means no faults."""
        if text is None or not text.strip():
            return cls()
        try:
            changes = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FaultPlanError(f"fault plan is not valid JSON: {exc.msg}") from exc
        return cls().updated(changes)

    def updated(self, changes: object) -> Self:
        """A copy with `changes` (a partial plan) applied; nothing changes if any value is bad.

        The random stream carries on unless `seed` is among the changes, which restarts it.
        """
        if not isinstance(changes, Mapping):
            raise FaultPlanError("a fault plan must be a JSON object")
        settable = {spec.name: spec for spec in fields(self) if spec.init}
        clean: dict[str, Any] = {}
        for name, value in changes.items():
            spec = settable.get(name)
            if spec is None:
                known = ", ".join(sorted(settable))
                raise FaultPlanError(f"unknown fault field {name!r} (known: {known})")
            clean[name] = _checked(name, value, spec.metadata)
        plan = replace(self, **clean)
        if "seed" not in clean:
            plan.rng = self.rng
        return plan

    def to_dict(self) -> dict[str, Any]:
        plan: dict[str, Any] = {}
        for spec in fields(self):
            if spec.init:
                value = getattr(self, spec.name)
                plan[spec.name] = list(value) if isinstance(value, tuple) else value
        return plan

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def roll(self, probability: float) -> bool:
        """True with `probability`; draws nothing when it is 0, so unused faults stay free."""
        return probability > 0 and self.rng.random() < probability

    def should_error(self) -> bool:
        return self.roll(self.error_rate)

    def should_ghost(self) -> bool:
        return self.roll(self.ghost_rate)

    @property
    def latency_s(self) -> float:
        return self.latency_ms / 1000


def _checked(name: str, value: object, metadata: Mapping[str, Any]) -> Any:
    kind = metadata.get(_KIND)
    is_bool = isinstance(value, bool)  # JSON true/false are ints to Python; never accept them
    if kind == _RATE:
        if isinstance(value, int | float) and not is_bool and 0 <= value <= 1:  # NaN fails too
            return float(value)
        raise FaultPlanError(f"{name} must be a number from 0 to 1, got {value!r}")
    if kind == _COUNT:
        maximum = metadata["maximum"]
        if isinstance(value, int) and not is_bool and 0 <= value <= maximum:
            return value
        raise FaultPlanError(f"{name} must be an integer from 0 to {maximum}, got {value!r}")
    if kind == _CODES:
        if isinstance(value, list) and value and all(_is_code(code) for code in value):
            return tuple(value)
        raise FaultPlanError(f"{name} must be a non-empty list of non-empty strings")
    if kind == _SEED:
        if value is None or (isinstance(value, int) and not is_bool):
            return value
        raise FaultPlanError(f"{name} must be an integer or null, got {value!r}")
    raise FaultPlanError(f"{name} cannot be set")


def _is_code(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())
