"""A seller's statement for one cycle and currency (pure): the opening balance (the last
statement's closing, 0 for the first), every line booked to the seller's payable in that
cycle, the totals per line type and the closing balance. From the seller's side: what the
marketplace owes them is positive; a return charged to them is a negative line. A
negative closing balance is carried forward as the next opening (nothing is paid out).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class StatementLine:
    entry_id: str
    return_id: str
    order_ref: str
    sku: str
    line_type: str
    description: str
    amount_minor: int  # the seller's side: + owed to them, − charged to them
    booked_at_ms: int


@dataclass(frozen=True)
class Statement:
    seller_id: str
    currency: str
    cycle_id: str
    opening_minor: int
    lines: tuple[StatementLine, ...]

    @property
    def totals(self) -> dict[str, int]:
        sums: dict[str, int] = defaultdict(int)
        for line in self.lines:
            sums[line.line_type] += line.amount_minor
        return dict(sorted(sums.items()))

    @property
    def closing_minor(self) -> int:
        return self.opening_minor + sum(line.amount_minor for line in self.lines)

    @property
    def payout_minor(self) -> int:
        """What is paid to the seller for the cycle (nothing when the balance is negative)."""
        return max(0, self.closing_minor)

    @property
    def carried_forward_minor(self) -> int:
        """The next statement's opening: a negative balance carries forward, a positive one
        is paid out."""
        return min(0, self.closing_minor)


def statement(
    seller_id: str,
    currency: str,
    cycle_id: str,
    previous: Statement | None,
    lines: Sequence[StatementLine],
) -> Statement:
    opening = previous.carried_forward_minor if previous is not None else 0
    ordered = tuple(sorted(lines, key=lambda x: (x.booked_at_ms, x.entry_id, x.line_type)))
    return Statement(seller_id, currency, cycle_id, opening, ordered)
