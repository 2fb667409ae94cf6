"""A buy-now-pay-later instalment plan, and how refunds reduce it (pure; integers only).

The buyer paid the order in `instalments` equal parts (the remainder spread one minor unit at
a time over the first ones); the first part is PAID at checkout, the others are DUE one
`interval_ms` apart. A refund first cancels what the buyer still owes, starting from the LAST
instalment; only what exceeds everything still due is paid back to the buyer. Several refunds
of one order apply one after another, each to the schedule the previous one left.

    schedule = plan(10_000, first_due_at_ms=now)
    schedule, to_buyer = apply_refund(schedule, 3_000)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

PAID = "PAID"
DUE = "DUE"
CANCELLED = "CANCELLED"
STATUSES = frozenset({PAID, DUE, CANCELLED})

DEFAULT_INSTALMENTS = 4
DEFAULT_INTERVAL_MS = 30 * 24 * 3600 * 1000  # 30 days


@dataclass(frozen=True)
class Instalment:
    number: int  # 1-based
    due_at: int  # epoch ms
    amount_minor: int
    status: str  # PAID | DUE | CANCELLED

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "due_at": self.due_at,
            "amount_minor": self.amount_minor,
            "status": self.status,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Instalment:
        return cls(
            number=int(data["number"]),
            due_at=int(data["due_at"]),
            amount_minor=int(data["amount_minor"]),
            status=str(data["status"]),
        )


Schedule = tuple[Instalment, ...]


def plan(
    order_paid_minor: int,
    instalments: int = DEFAULT_INSTALMENTS,
    *,
    first_due_at_ms: int,
    interval_ms: int = DEFAULT_INTERVAL_MS,
) -> Schedule:
    """`order_paid_minor` split into `instalments` parts whose sum is exact; the first is PAID.

    Every part is at least one minor unit, so `order_paid_minor` must be >= `instalments`.
    """
    if instalments < 1:
        raise ValueError(f"instalments must be at least 1, got {instalments}")
    if order_paid_minor < instalments:
        raise ValueError(
            f"order_paid_minor ({order_paid_minor}) must be at least the number of "
            f"instalments ({instalments})"
        )
    if interval_ms < 0:
        raise ValueError(f"interval_ms must not be negative, got {interval_ms}")
    base, remainder = divmod(order_paid_minor, instalments)
    return tuple(
        Instalment(
            number=index + 1,
            due_at=first_due_at_ms + index * interval_ms,
            amount_minor=base + (1 if index < remainder else 0),
            status=PAID if index == 0 else DUE,
        )
        for index in range(instalments)
    )


def due_minor(schedule: Schedule) -> int:
    """What the buyer still owes."""
    return sum(i.amount_minor for i in schedule if i.status == DUE)


def apply_refund(schedule: Schedule, refund_minor: int) -> tuple[Schedule, int]:
    """(the schedule after the refund, the part of it paid back to the buyer).

    DUE instalments are reduced from the last one backwards; one reduced to 0 is CANCELLED,
    one reduced in part stays DUE with a smaller amount. No minor unit is created or lost:
    `due_minor(before) - due_minor(after) + refunded_to_buyer == refund_minor`.
    """
    if refund_minor < 0:
        raise ValueError(f"refund_minor must not be negative, got {refund_minor}")
    left = refund_minor
    reduced = list(schedule)
    for index in range(len(reduced) - 1, -1, -1):
        instalment = reduced[index]
        if left == 0:
            break
        if instalment.status != DUE:
            continue
        cut = min(left, instalment.amount_minor)
        left -= cut
        amount = instalment.amount_minor - cut
        reduced[index] = replace(
            instalment, amount_minor=amount, status=DUE if amount > 0 else CANCELLED
        )
    return tuple(reduced), left
