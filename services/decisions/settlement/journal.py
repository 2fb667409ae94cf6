"""Journal entries of postings (pure): balanced to zero per currency, immutable, each with
an id derived from the return and the step that booked it (a redelivered or replayed
event derives the same id, and the ledger books it once). A correction is a new entry
reversing the original, never an edit.

Sign: a posting's `amount_minor` is a debit when positive and a credit when negative.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from services.decisions.event_ids import deterministic_event_id
from services.decisions.money import CURRENCY_EXPONENTS


class LedgerError(ValueError):
    """An entry that cannot be booked: unbalanced, empty, an unknown currency."""


@dataclass(frozen=True)
class Posting:
    account: str
    amount_minor: int  # > 0 debit, < 0 credit
    currency: str
    # for a seller's statement: the kind of line (ItemPrice, Commission, ...) and its words
    line_type: str | None = None
    description: str = ""
    sku: str = ""  # the returned item a seller's line is about

    def __post_init__(self) -> None:
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise LedgerError(f"amount_minor must be an integer, got {self.amount_minor!r}")
        if self.currency not in CURRENCY_EXPONENTS:
            raise LedgerError(f"unknown currency {self.currency!r}")


@dataclass(frozen=True)
class JournalEntry:
    entry_id: str
    return_id: str
    step: str  # what booked it: "refund", "liability", "claim:rejected", ...
    booked_at_ms: int
    postings: tuple[Posting, ...]
    reverses: str | None = None  # the entry this one reverses
    references: dict[str, str] = field(default_factory=dict)  # order, seller, provider ref...

    def __post_init__(self) -> None:
        if not self.postings:
            raise LedgerError(f"entry {self.entry_id} has no postings")
        off = imbalance(self.postings)
        if off:
            raise LedgerError(f"entry {self.entry_id} does not balance: {off}")


def imbalance(postings: tuple[Posting, ...] | list[Posting]) -> dict[str, int]:
    """Per currency, the sum of the postings when it is not zero (empty: balanced)."""
    sums: dict[str, int] = defaultdict(int)
    for posting in postings:
        sums[posting.currency] += posting.amount_minor
    return {currency: total for currency, total in sorted(sums.items()) if total}


def entry_id(return_id: str, step: str) -> str:
    """The id of the entry `step` books for a return: the same for every delivery."""
    return deterministic_event_id(return_id, "ledger", step)


def without_zero(postings: list[Posting]) -> tuple[Posting, ...]:
    """The postings that move money (a zero line is no posting)."""
    return tuple(p for p in postings if p.amount_minor)


def reversal(original: JournalEntry, booked_at_ms: int, reason: str) -> JournalEntry:
    """The entry undoing `original`: every posting negated, its own id derived from the
    original's, `reverses` naming it."""
    return JournalEntry(
        entry_id=deterministic_event_id(original.entry_id, "reversal"),
        return_id=original.return_id,
        step=f"reversal:{original.step}",
        booked_at_ms=booked_at_ms,
        postings=tuple(
            Posting(
                p.account,
                -p.amount_minor,
                p.currency,
                p.line_type,
                f"reversal ({reason})" + (f": {p.description}" if p.description else ""),
                p.sku,
            )
            for p in original.postings
        ),
        reverses=original.entry_id,
        references={**original.references, "reason": reason},
    )
