"""Reconciliation (pure): the ledger's refunds, the providers' settlement report lines and the
sellers' debits matched three ways as of a day, every difference a break in its category.

- A ledger refund (through a provider) is matched by the provider's `Refunded` line with our
  merchant reference (the refund's idempotency key): same currency, same gross, and the fee
  the provider's contract says. No line yet: `timing` while younger than the timing window
  (it resolves itself when the line comes), `missing_at_psp` after. A `RefundFailed` line
  for it: `status_mismatch`. More than one `Refunded` line: `duplicate_at_psp`.
- A `Refunded` line we have no refund for: `status_mismatch` when we saw the provider decline
  that reference, else `unknown_at_psp` (a refund at the provider we never made).
- A seller-liable return that was refunded but whose seller was never debited:
  `seller_debit_missing`.

Each break has an age in days (from the refund's booking, the line's booking date, or the
completion), and a key stable across runs, so a day reconciled twice gives the same breaks
and a break seen on several days is one break. `Chargeback` and `RefundedReversed` lines are
not breaks: they book entries of their own (`report_line_entry`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from fractions import Fraction

from services.decisions.refunds.order_model import Liable
from services.decisions.settlement.accounts import AccountKind, account
from services.decisions.settlement.fx import round_half_even
from services.decisions.settlement.journal import JournalEntry, Posting, entry_id
from services.decisions.settlement.return_postings import LineType


class BreakCategory(StrEnum):
    TIMING = "timing"
    MISSING_AT_PSP = "missing_at_psp"
    UNKNOWN_AT_PSP = "unknown_at_psp"
    AMOUNT_MISMATCH = "amount_mismatch"
    CURRENCY_MISMATCH = "currency_mismatch"
    DUPLICATE_AT_PSP = "duplicate_at_psp"
    FEE_MISMATCH = "fee_mismatch"
    STATUS_MISMATCH = "status_mismatch"
    SELLER_DEBIT_MISSING = "seller_debit_missing"


EXPLAINED = frozenset({BreakCategory.TIMING})  # resolve themselves: no ticket

REFUNDED = "Refunded"
REFUND_FAILED = "RefundFailed"
REFUNDED_REVERSED = "RefundedReversed"
CHARGEBACK = "Chargeback"
FEE = "Fee"
LINE_TYPES = frozenset({REFUNDED, REFUND_FAILED, REFUNDED_REVERSED, CHARGEBACK, FEE})
# a provider's daily settlement report, one line per money movement (net = gross + fee)
REPORT_COLUMNS = (
    "provider_reference",
    "merchant_reference",
    "type",
    "gross_minor",
    "fee_minor",
    "net_minor",
    "currency",
    "booking_date",
    "batch",
)


@dataclass(frozen=True)
class LedgerRefund:
    """A refund the ledger booked as paid through a provider."""

    return_id: str
    provider: str
    merchant_reference: str
    provider_reference: str
    amount_minor: int
    currency: str
    booked_on: date


@dataclass(frozen=True)
class ReportLine:
    """One line of a provider's settlement report (amounts as the provider wrote them)."""

    provider: str
    provider_reference: str
    merchant_reference: str
    type: str
    gross_minor: int
    fee_minor: int
    net_minor: int
    currency: str
    booking_date: date
    batch: str
    line_no: int  # its place in the day's report: two identical lines stay two


@dataclass(frozen=True)
class SellerLiableReturn:
    """A refunded return the seller is liable for, and whether the seller was debited."""

    return_id: str
    completed_on: date
    debited: bool


@dataclass(frozen=True)
class FeeTerms:
    """What each provider charges per refund, in basis points of the gross (`*`: the rest)."""

    refund_fee_bps: Mapping[str, int] = field(default_factory=lambda: {"*": 20})

    def fee(self, provider: str, gross_minor: int) -> int:
        bps = self.refund_fee_bps.get(provider, self.refund_fee_bps.get("*", 0))
        return round_half_even(Fraction(gross_minor * bps, 10_000))


@dataclass(frozen=True)
class Break:
    category: BreakCategory
    provider: str
    reference: str  # the merchant reference (or the provider's, or the return id)
    return_id: str
    age_days: int
    detail: str

    @property
    def key(self) -> str:
        """The same break on every day it is seen."""
        return f"{self.category.value}:{self.provider}:{self.reference}"

    @property
    def needs_ticket(self) -> bool:
        return self.category not in EXPLAINED


@dataclass(frozen=True)
class Reconciliation:
    as_of: date
    matched: int
    compared: int  # ledger refunds and report refunds considered
    breaks: tuple[Break, ...]

    @property
    def match_rate(self) -> float:
        return 1.0 if not self.compared else self.matched / self.compared

    def by_category(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for found in self.breaks:
            counts[found.category.value] += 1
        return dict(sorted(counts.items()))


def reconcile(
    as_of: date,
    refunds: Iterable[LedgerRefund],
    lines: Iterable[ReportLine],
    declined: Iterable[tuple[str, str]],
    seller_returns: Iterable[SellerLiableReturn],
    fees: FeeTerms,
    timing_days: int,
) -> Reconciliation:
    """The breaks as of `as_of`: what was booked or reported on or before it. `declined`:
    the (provider, merchant reference) pairs we saw the provider decline."""
    refunded: dict[tuple[str, str], list[ReportLine]] = defaultdict(list)
    failed: dict[tuple[str, str], list[ReportLine]] = defaultdict(list)
    for line in sorted(lines, key=lambda ln: (ln.booking_date, ln.line_no)):
        if line.booking_date > as_of:
            continue
        if line.type == REFUNDED:
            refunded[(line.provider, line.merchant_reference)].append(line)
        elif line.type == REFUND_FAILED:
            failed[(line.provider, line.merchant_reference)].append(line)
    breaks: list[Break] = []
    matched = compared = 0
    ours: set[tuple[str, str]] = set()
    for refund in refunds:
        if refund.booked_on > as_of:
            continue
        compared += 1
        key = (refund.provider, refund.merchant_reference)
        ours.add(key)
        found = _refund_break(
            as_of, refund, refunded.get(key, []), failed.get(key, []), fees, timing_days
        )
        if found is None:
            matched += 1
        else:
            breaks.append(found)
    seen_declined = set(declined)
    for key, reported in refunded.items():
        if key in ours:
            continue
        compared += 1
        line = reported[0]
        category = (
            BreakCategory.STATUS_MISMATCH if key in seen_declined else BreakCategory.UNKNOWN_AT_PSP
        )
        detail = (
            "we saw the provider decline this refund; its report says it was refunded"
            if category is BreakCategory.STATUS_MISMATCH
            else f"a refund of {line.gross_minor} {line.currency} we never made"
        )
        breaks.append(
            Break(
                category,
                line.provider,
                line.merchant_reference,
                "",
                _age(as_of, line.booking_date),
                detail,
            )
        )
    for seller_return in seller_returns:
        if seller_return.debited or seller_return.completed_on > as_of:
            continue
        breaks.append(
            Break(
                BreakCategory.SELLER_DEBIT_MISSING,
                "",
                seller_return.return_id,
                seller_return.return_id,
                _age(as_of, seller_return.completed_on),
                "refunded, the seller liable, and no debit on the seller's account",
            )
        )
    return Reconciliation(as_of, matched, compared, tuple(sorted(breaks, key=lambda b: b.key)))


def _refund_break(
    as_of: date,
    refund: LedgerRefund,
    reported: list[ReportLine],
    failed: list[ReportLine],
    fees: FeeTerms,
    timing_days: int,
) -> Break | None:
    def found(category: BreakCategory, age_from: date, detail: str) -> Break:
        return Break(
            category,
            refund.provider,
            refund.merchant_reference,
            refund.return_id,
            _age(as_of, age_from),
            detail,
        )

    if not reported:
        if failed:
            return found(
                BreakCategory.STATUS_MISMATCH,
                failed[0].booking_date,
                "we booked the refund as paid; the provider reports it failed",
            )
        age = _age(as_of, refund.booked_on)
        if age < timing_days:
            return found(
                BreakCategory.TIMING, refund.booked_on, "not in the provider's reports yet"
            )
        return found(
            BreakCategory.MISSING_AT_PSP,
            refund.booked_on,
            f"not in the provider's reports {age} days after we booked it",
        )
    line = reported[0]
    if len(reported) > 1:
        return found(
            BreakCategory.DUPLICATE_AT_PSP,
            reported[1].booking_date,
            f"reported {len(reported)} times (lines {[r.line_no for r in reported]})",
        )
    if line.currency != refund.currency:
        return found(
            BreakCategory.CURRENCY_MISMATCH,
            line.booking_date,
            f"we paid {refund.currency}, the provider reports {line.currency}",
        )
    if line.gross_minor != refund.amount_minor:
        return found(
            BreakCategory.AMOUNT_MISMATCH,
            line.booking_date,
            f"we paid {refund.amount_minor}, the provider reports {line.gross_minor}",
        )
    expected_fee = fees.fee(refund.provider, line.gross_minor)
    if line.fee_minor != expected_fee:
        return found(
            BreakCategory.FEE_MISMATCH,
            line.booking_date,
            f"the contract's fee is {expected_fee}, the provider charged {line.fee_minor}",
        )
    return None


def _age(as_of: date, since: date) -> int:
    return max(0, (as_of - since).days)


@dataclass(frozen=True)
class ChargedTo:
    """Who a report line's return charges: its liable party, and when the seller, the
    seller's account in the line's currency and the market and order of its statement."""

    return_id: str = ""
    liable: Liable | None = None
    seller_account: str | None = None
    market: str = ""
    order_ref: str = ""


def report_line_entry(
    line: ReportLine, charged_to: ChargedTo, booked_at_ms: int
) -> JournalEntry | None:
    """The entry a `Chargeback` or `RefundedReversed` line books (None for other types), its
    id derived from the line alone (the provider and its reference): booked once however
    the line is read, whatever is known of its return then.

    - RefundedReversed: the refund came back from the buyer's bank; the provider credits us
      (debit its clearing) and the buyer is owed it again (credit buyer refunds payable).
    - Chargeback: the buyer disputed with their bank and the provider took the money (credit
      its clearing), charged to the seller when the seller is liable and the seller's account
      is in the line's currency (`seller_account`), else to the platform's chargebacks.
    """
    currency, amount = line.currency, line.gross_minor
    if amount <= 0 or line.type not in (CHARGEBACK, REFUNDED_REVERSED):
        return None
    clearing = account(AccountKind.PSP_CLEARING, currency, line.provider)
    if line.type == REFUNDED_REVERSED:
        postings = (
            Posting(clearing, amount, currency, description="refund returned by the bank"),
            Posting(account(AccountKind.BUYER_REFUNDS_PAYABLE, currency), -amount, currency),
        )
        step = f"reversed:{line.provider_reference}"
    else:
        on_seller = charged_to.liable is Liable.SELLER and bool(charged_to.seller_account)
        charged = (
            charged_to.seller_account
            if on_seller and charged_to.seller_account
            else account(AccountKind.CHARGEBACKS, currency)
        )
        postings = (
            Posting(charged, amount, currency, LineType.CHARGEBACK, "chargeback by the bank"),
            Posting(clearing, -amount, currency),
        )
        step = f"chargeback:{line.provider_reference}"
    references = {
        "provider": line.provider,
        "provider_reference": line.provider_reference,
        "merchant_reference": line.merchant_reference,
        "batch": line.batch,
    }
    if line.type == CHARGEBACK and charged.startswith(AccountKind.SELLER_PAYABLE.value):
        # on the seller's statement: its market's cycle, its order
        references |= {"market": charged_to.market, "order_id": charged_to.order_ref}
    return JournalEntry(
        entry_id(f"{line.provider}:{line.provider_reference}", step),
        charged_to.return_id or line.merchant_reference,
        step,
        booked_at_ms,
        postings,
        references=references,
    )
