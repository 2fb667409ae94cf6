"""Who pays for a return, as journal entries (pure).

Two entries per refunded return, each with an id derived from the return and its step:

- **refund** (the refund issued): debit `returns_clearing`, credit the provider's clearing
  account (or the store-credit liability) — the money went out to the buyer;
- **liability** (the return completed, its liable party known): credit `returns_clearing`
  and charge the liable party:
  - SELLER: the seller's payable is debited the item price and the original shipping the
    buyer got back, credited the marketplace's commission on the returned items per policy
    (FULL, PARTIAL share, KEPT) and, per policy, the fees kept from the buyer; the return
    label is charged to the seller when the policy says so;
  - BUYER (a remorse return): as SELLER — the item goes back to the seller, who refunds
    its price — except the label; the buyer's share is the fees kept from the refund;
  - PLATFORM: a platform expense;
  - CARRIER: a claim receivable from the carrier (its lifecycle: `claim_entry`).

The seller's lines are converted into the seller's settlement currency at the rate locked
on the order (decisions/settlement/fx.py): each line on its own, the residue to the
rounding account, and the two sides of the conversion to `fx_conversion` in each currency.
Commission on the returned price is rounded half to even in the buyer's currency.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

from services.decisions.refunds.order_model import Liable
from services.decisions.settlement.accounts import AccountKind, account
from services.decisions.settlement.fx import Rate, convert_lines, round_half_even
from services.decisions.settlement.journal import (
    JournalEntry,
    LedgerError,
    Posting,
    entry_id,
    reversal,
    without_zero,
)

BPS = 10_000


class LineType(StrEnum):
    """The kinds of a seller's statement lines."""

    ITEM_PRICE = "ItemPrice"
    COMMISSION = "Commission"
    SHIPPING_FEE = "ShippingFee"
    RESTOCKING_FEE = "RestockingFee"
    RETURN_SHIPPING = "ReturnShipping"
    CARRIER_CLAIM = "CarrierClaim"
    FX_ADJUSTMENT = "FXAdjustment"
    CHARGEBACK = "Chargeback"
    DISPUTE_ADJUSTMENT = "DisputeAdjustment"  # a buyer's dispute refunded at the seller's cost
    EXCHANGE_DIFFERENCE = "ExchangeDifference"  # a dearer variant's difference the buyer paid


class CommissionCredit(StrEnum):
    FULL = "FULL"
    PARTIAL = "PARTIAL"
    KEPT = "KEPT"


class FeesTo(StrEnum):
    SELLER = "SELLER"
    PLATFORM = "PLATFORM"


@dataclass(frozen=True)
class SettlementTerms:
    """Policy: how much commission goes back to the seller, who keeps the fees a buyer
    paid, and what a return label costs a liable seller (buyer's currency)."""

    commission_credit: CommissionCredit = CommissionCredit.FULL
    partial_credit_bps: int = 8_000  # the share credited when PARTIAL
    fees_to: FeesTo = FeesTo.SELLER
    return_label_minor: int = 0


@dataclass(frozen=True)
class ReturnedLine:
    """One returned order line: what the buyer got back for its items (after their share
    of discounts, with tax), and the commission the marketplace took on it."""

    sku: str
    item_price: int
    commission_bps: int

    def __post_init__(self) -> None:
        if isinstance(self.item_price, bool) or not isinstance(self.item_price, int):
            raise LedgerError(f"{self.sku}: item_price must be an integer")
        if self.item_price < 0:
            raise LedgerError(f"{self.sku}: item_price must not be negative")
        if not 0 <= self.commission_bps <= BPS:
            raise LedgerError(f"{self.sku}: commission {self.commission_bps} bps not in 0–10000")


@dataclass(frozen=True)
class ReturnCharges:
    """What the buyer got back and why, in the buyer's currency."""

    currency: str
    lines: tuple[ReturnedLine, ...]
    shipping_fee: int = 0  # original shipping refunded (seller at fault)
    restocking_fee: int = 0  # kept from the buyer (with any damage deduction)
    return_shipping: int = 0  # kept from the buyer

    def __post_init__(self) -> None:
        amounts = (self.shipping_fee, self.restocking_fee, self.return_shipping)
        if any(isinstance(a, bool) or not isinstance(a, int) or a < 0 for a in amounts):
            raise LedgerError(f"charges must be non-negative integers: {amounts}")
        if self.refunded < 0:
            raise LedgerError("fees kept exceed what the buyer is refunded")

    @property
    def item_price(self) -> int:
        return sum(line.item_price for line in self.lines)

    @property
    def refunded(self) -> int:
        return self.item_price + self.shipping_fee - self.restocking_fee - self.return_shipping


@dataclass(frozen=True)
class SoldBy:
    """From the order: the seller, their settlement currency and the buyer→seller rate
    locked when the order was placed."""

    seller_id: str
    currency: str
    rate: Rate

    def __post_init__(self) -> None:
        if self.rate.quote != self.currency:
            raise LedgerError(
                f"rate {self.rate.base}→{self.rate.quote} is not into {self.currency}"
            )


@dataclass(frozen=True)
class ReturnToSettle:
    return_id: str
    order_id: str
    liable: Liable
    charges: ReturnCharges
    sold_by: SoldBy
    carrier_id: str | None = None
    market: str = ""  # the order's storefront: whose settlement cycles its seller lines join

    def __post_init__(self) -> None:
        if self.sold_by.rate.base != self.charges.currency:
            raise LedgerError(
                f"rate {self.sold_by.rate.base}→{self.sold_by.rate.quote} does not start from "
                f"the buyer's {self.charges.currency}"
            )
        if self.liable is Liable.CARRIER and not self.carrier_id:
            raise LedgerError("a carrier-liable return needs the carrier")


def refund_entry(
    return_id: str,
    amount_minor: int,
    currency: str,
    booked_at_ms: int,
    provider: str | None,
    provider_reference: str = "",
    merchant_reference: str = "",
) -> JournalEntry | None:
    """The refund paid out: through `provider`, or as store credit when None (nothing
    when nothing was paid). The provider's reference and ours (the refund's idempotency
    key) are what reconciliation matches the provider's report lines on."""
    if not amount_minor:
        return None
    paid_from = (
        account(AccountKind.PSP_CLEARING, currency, provider)
        if provider is not None
        else account(AccountKind.STORE_CREDIT, currency)
    )
    step = refund_step(merchant_reference)
    return JournalEntry(
        entry_id(return_id, step),
        return_id,
        step,
        booked_at_ms,
        without_zero(
            [
                Posting(account(AccountKind.RETURNS_CLEARING, currency), amount_minor, currency),
                Posting(paid_from, -amount_minor, currency, description="refund to the buyer"),
            ]
        ),
        references={
            "provider": provider or "store_credit",
            "provider_reference": provider_reference,
            "merchant_reference": merchant_reference,
        },
    )


def refund_step(merchant_reference: str) -> str:
    """A refund's step: one per attempt (each attempt has its own merchant reference), so a
    second attempt after a failed one is booked too."""
    return f"refund:{merchant_reference}" if merchant_reference else "refund"


def failed_refund_entry(refund: JournalEntry, booked_at_ms: int, decline_code: str) -> JournalEntry:
    """A refund booked as paid that the provider failed later (a pending transfer the bank
    sent back): its entry reversed, the buyer's refund owed again by whoever retries it."""
    return reversal(refund, booked_at_ms, f"the provider failed the refund ({decline_code})")


def commission_credit(item_price: int, commission_bps: int, terms: SettlementTerms) -> int:
    """The commission credited back to the seller on `item_price`, half to even."""
    share = {
        CommissionCredit.FULL: BPS,
        CommissionCredit.PARTIAL: terms.partial_credit_bps,
        CommissionCredit.KEPT: 0,
    }[terms.commission_credit]
    return round_half_even(Fraction(item_price * commission_bps * share, BPS * BPS))


def liability_entry(
    settled: ReturnToSettle, terms: SettlementTerms, booked_at_ms: int
) -> JournalEntry | None:
    """The liable party charged (nothing when the return moved no money)."""
    charges, currency = settled.charges, settled.charges.currency
    postings = [
        Posting(account(AccountKind.RETURNS_CLEARING, currency), -charges.refunded, currency)
    ]
    if settled.liable in (Liable.PLATFORM, Liable.CARRIER):
        postings.append(
            _not_the_seller(settled.liable, charges.refunded, currency, settled.carrier_id, "")
        )
    else:
        postings += _seller_charges(settled, terms)
    references = {
        "order_id": settled.order_id,
        "skus": ",".join(line.sku for line in settled.charges.lines),
        "seller_id": settled.sold_by.seller_id,
        "liable": settled.liable.value,
        "market": settled.market,
    }
    moved = without_zero(postings)
    if not moved:
        return None
    return JournalEntry(
        entry_id(settled.return_id, "liability"),
        settled.return_id,
        "liability",
        booked_at_ms,
        moved,
        references=references,
    )


def _not_the_seller(
    liable: Liable, amount: int, currency: str, carrier_id: str | None, prefix: str
) -> Posting:
    """A refund the platform (an expense) or the carrier (a claim receivable) pays."""
    if liable is Liable.PLATFORM:
        expense = account(AccountKind.PLATFORM_EXPENSE, currency)
        return Posting(expense, amount, currency, description=f"{prefix}platform expense")
    claims = account(AccountKind.CARRIER_CLAIMS, currency, carrier_id)
    text = f"{prefix}claim against the carrier"
    return Posting(claims, amount, currency, LineType.CARRIER_CLAIM, text)


def _seller_charges(settled: ReturnToSettle, terms: SettlementTerms) -> list[Posting]:
    """The seller's lines (in the buyer's currency, + = the seller pays), the platform's
    side of each, and the conversion into the seller's currency."""
    charges, currency, sold_by = settled.charges, settled.charges.currency, settled.sold_by
    lines: list[tuple[LineType, int, str, str]] = []
    credits = 0
    for line in charges.lines:  # commission rounded per line: each is a statement line
        credit = commission_credit(line.item_price, line.commission_bps, terms)
        credits += credit
        lines += [
            (LineType.ITEM_PRICE, line.item_price, f"refund of {line.sku}", line.sku),
            (LineType.COMMISSION, -credit, f"commission on {line.sku} credited back", line.sku),
        ]
    lines.append((LineType.SHIPPING_FEE, charges.shipping_fee, "original shipping refunded", ""))
    platform = [Posting(account(AccountKind.COMMISSION, currency), credits, currency)]
    kept = charges.restocking_fee + charges.return_shipping
    if terms.fees_to is FeesTo.SELLER:
        lines += [
            (LineType.RESTOCKING_FEE, -charges.restocking_fee, "restocking fee the buyer paid", ""),
            (
                LineType.RETURN_SHIPPING,
                -charges.return_shipping,
                "return shipping the buyer paid",
                "",
            ),
        ]
    else:
        platform.append(Posting(account(AccountKind.FEES_RETAINED, currency), -kept, currency))
    if settled.liable is Liable.SELLER and terms.return_label_minor:
        label = terms.return_label_minor
        lines.append((LineType.RETURN_SHIPPING, label, "return label", ""))
        platform.append(
            Posting(account(AccountKind.RETURN_SHIPPING_RECOVERY, currency), -label, currency)
        )
    return platform + seller_postings([line for line in lines if line[1]], currency, sold_by)


def seller_postings(
    lines: list[tuple[LineType, int, str, str]], currency: str, sold_by: SoldBy
) -> list[Posting]:
    """The seller's statement lines (kind, amount in the buyer's currency, text, sku) on
    their payable, converted into the seller's currency line by line (the residue to the
    rounding account, both sides of the conversion to `fx_conversion`)."""
    seller_currency = sold_by.currency
    payable = account(AccountKind.SELLER_PAYABLE, seller_currency, sold_by.seller_id)
    if seller_currency == currency:
        return [
            Posting(payable, amount, currency, kind, text, sku) for kind, amount, text, sku in lines
        ]
    converted = convert_lines([amount for _, amount, _, _ in lines], sold_by.rate)
    seller = [
        Posting(payable, amount, seller_currency, kind, text, sku)
        for (kind, _, text, sku), amount in zip(lines, converted.lines, strict=True)
    ]
    total = sum(amount for _, amount, _, _ in lines)
    fx_in, fx_out = seller_currency, currency
    return [
        *seller,
        Posting(account(AccountKind.FX_CONVERSION, fx_out), total, fx_out),
        Posting(account(AccountKind.FX_CONVERSION, fx_in), -converted.whole, fx_in),
        Posting(account(AccountKind.ROUNDING, fx_in), converted.residue, fx_in),
    ]


@dataclass(frozen=True)
class DecidedDispute:
    """A dispute that refunded the buyer more (DisputeDecided): how much, who pays, and
    whether a re-inspection (not an agent) decided it."""

    return_id: str
    dispute_id: str
    refunded: int
    currency: str
    liable: Liable
    order_id: str
    sold_by: SoldBy | None = None  # a seller-liable dispute: whose payable, at which rate
    carrier_id: str | None = None
    reinspected: bool = False
    market: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.refunded, bool) or not isinstance(self.refunded, int):
            raise LedgerError("a dispute's refund must be an integer")
        if self.refunded <= 0:
            raise LedgerError("a dispute books only a positive refund")
        if self.liable is Liable.SELLER and self.sold_by is None:
            raise LedgerError("a seller-liable dispute needs the order's seller")
        if self.liable is Liable.CARRIER and not self.carrier_id:
            raise LedgerError("a carrier-liable dispute needs the carrier")
        if self.liable is Liable.BUYER:
            raise LedgerError("a dispute's refund is never the buyer's to pay")


def dispute_entry(
    dispute: DecidedDispute, terms: SettlementTerms, booked_at_ms: int
) -> JournalEntry:
    """The party a decided dispute makes pay for its refund (the refund itself is booked
    from its RefundIssued, by its merchant reference, like any refund):
    - SELLER: the seller's payable, a DisputeAdjustment line (in their currency, converted
      as a return's lines are); when a re-inspection gives back a deduction the platform
      kept (terms: fees to the platform), the platform's retained fees instead;
    - PLATFORM (goodwill): a platform expense;
    - CARRIER: a claim receivable from the carrier."""
    currency, amount = dispute.currency, dispute.refunded
    postings = [Posting(account(AccountKind.RETURNS_CLEARING, currency), -amount, currency)]
    if dispute.liable in (Liable.PLATFORM, Liable.CARRIER):
        why = f"dispute {dispute.dispute_id}: "
        postings.append(_not_the_seller(dispute.liable, amount, currency, dispute.carrier_id, why))
    elif dispute.reinspected and terms.fees_to is FeesTo.PLATFORM:
        postings.append(
            Posting(
                account(AccountKind.FEES_RETAINED, currency),
                amount,
                currency,
                description=f"dispute {dispute.dispute_id}: deduction given back",
            )
        )
    else:
        assert dispute.sold_by is not None  # checked when the dispute was made
        text = f"dispute {dispute.dispute_id}: refunded to the buyer"
        line = (LineType.DISPUTE_ADJUSTMENT, amount, text, "")
        postings += seller_postings([line], currency, dispute.sold_by)
    step = f"dispute:{dispute.dispute_id}"
    seller_id = dispute.sold_by.seller_id if dispute.sold_by else ""
    return JournalEntry(
        entry_id(dispute.return_id, step),
        dispute.return_id,
        step,
        booked_at_ms,
        without_zero(postings),
        references={
            "order_id": dispute.order_id,
            "dispute_id": dispute.dispute_id,
            "seller_id": seller_id,
            "liable": dispute.liable.value,
            "market": dispute.market,
        },
    )


def exchange_charge_entry(
    return_id: str,
    amount_minor: int,
    currency: str,
    provider: str,
    sold_by: SoldBy,
    booked_at_ms: int,
    provider_reference: str,
    merchant_reference: str,
) -> JournalEntry:
    """A buyer paid the difference of an exchange to a dearer variant: the provider holds
    the money for us (its clearing account), and the seller, who ships the dearer item, is
    owed it (an ExchangeDifference line, in their currency; no commission is taken on it)."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
        raise LedgerError(f"a charge must be a positive integer, got {amount_minor!r}")
    line = (LineType.EXCHANGE_DIFFERENCE, -amount_minor, "dearer variant: the buyer paid", "")
    postings = [
        Posting(
            account(AccountKind.PSP_CLEARING, currency, provider),
            amount_minor,
            currency,
            description="the buyer paid the exchange's difference",
        ),
        *seller_postings([line], currency, sold_by),
    ]
    step = f"charge:{merchant_reference}"
    return JournalEntry(
        entry_id(return_id, step),
        return_id,
        step,
        booked_at_ms,
        without_zero(postings),
        references={
            "provider": provider,
            "provider_reference": provider_reference,
            "merchant_reference": merchant_reference,
            "seller_id": sold_by.seller_id,
        },
    )


class ClaimOutcome(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    PAID = "paid"


def claim_entry(
    return_id: str,
    carrier_id: str,
    claimed_minor: int,
    currency: str,
    outcome: ClaimOutcome,
    booked_at_ms: int,
    paid_minor: int = 0,
) -> JournalEntry | None:
    """What a step of a carrier claim books: nothing when accepted (still receivable); the
    claim written off when rejected; when paid, the money received and any shortfall
    written off (the platform bears what the carrier did not pay)."""
    claims = account(AccountKind.CARRIER_CLAIMS, currency, carrier_id)
    write_off = account(AccountKind.CARRIER_WRITE_OFF, currency)
    if outcome is ClaimOutcome.ACCEPTED:
        return None
    if outcome is ClaimOutcome.REJECTED:
        postings = [
            Posting(write_off, claimed_minor, currency, description="claim rejected"),
            Posting(claims, -claimed_minor, currency, LineType.CARRIER_CLAIM, "claim rejected"),
        ]
    else:
        if not 0 <= paid_minor <= claimed_minor:
            raise LedgerError(f"paid {paid_minor} is not within 0–{claimed_minor} claimed")
        postings = [
            Posting(account(AccountKind.BANK, currency), paid_minor, currency, None, "claim paid"),
            Posting(write_off, claimed_minor - paid_minor, currency, description="claim shortfall"),
            Posting(claims, -claimed_minor, currency, LineType.CARRIER_CLAIM, "claim settled"),
        ]
    step = f"claim:{outcome.value}"
    return JournalEntry(
        entry_id(return_id, step),
        return_id,
        step,
        booked_at_ms,
        without_zero(postings),
        references={"carrier_id": carrier_id},
    )
