"""Splitting an amount of minor units without creating or losing one (pure).

Two tools, both exact on integers:

- `split_by_weights`: the largest-remainder (Hamilton) method. Each part gets the floor of
  its exact share; the units left over go, one each, to the parts with the largest
  remainders (ties: the earlier part). The parts always add up to the amount.
- `cumulative_share`: the share of an amount that belongs to units `before..after` out of
  `of`, computed as floor(amount·after/of) − floor(amount·before/of). Summed over any
  sequence of partial returns that ends with every unit returned, it telescopes to exactly
  the amount; at every point the running sum never exceeds it.
"""

from __future__ import annotations

from collections.abc import Sequence


class AllocationError(ValueError):
    """Weights or amounts that cannot be split (negative, or all-zero weights)."""


def split_by_weights(amount: int, weights: Sequence[int]) -> list[int]:
    if amount < 0:
        raise AllocationError(f"cannot split a negative amount ({amount})")
    if any(weight < 0 for weight in weights):
        raise AllocationError(f"weights must not be negative: {list(weights)}")
    total_weight = sum(weights)
    if total_weight == 0:
        if amount == 0:
            return [0] * len(weights)
        raise AllocationError(f"cannot split {amount} over weights that are all zero")
    floors = [amount * weight // total_weight for weight in weights]
    remainders = [amount * weight % total_weight for weight in weights]
    left = amount - sum(floors)
    by_remainder = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for index in by_remainder[:left]:
        floors[index] += 1
    return floors


def cumulative_share(amount: int, before: int, after: int, of: int) -> int:
    if not 0 <= before <= after <= of or of == 0:
        raise AllocationError(
            f"need 0 <= before <= after <= of, of > 0 (got {before}, {after}, {of})"
        )
    return amount * after // of - amount * before // of
