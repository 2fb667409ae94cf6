"""Settlement postings (services/decisions/settlement): every entry balances per currency,
the seller's converted lines plus the rounding residue are the converted whole, ids are
derived from the return and the step, corrections reverse, a claim's lifecycle clears."""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.decisions.refunds.order_model import Liable
from services.decisions.settlement.accounts import AccountKind, kind_of, party_of
from services.decisions.settlement.fx import FxError, Rate, convert, convert_lines, exact
from services.decisions.settlement.journal import (
    JournalEntry,
    LedgerError,
    Posting,
    imbalance,
    reversal,
)
from services.decisions.settlement.return_postings import (
    ClaimOutcome,
    CommissionCredit,
    FeesTo,
    LineType,
    ReturnCharges,
    ReturnedLine,
    ReturnToSettle,
    SettlementTerms,
    SoldBy,
    claim_entry,
    commission_credit,
    liability_entry,
    refund_entry,
)
from services.decisions.settlement.statements import StatementLine, statement

CURRENCIES = ("EUR", "GBP", "JPY", "KWD", "IDR", "USD")


@st.composite
def rates(draw: st.DrawFn, base: str, quote: str) -> Rate:
    if base == quote:
        return Rate.identity(base)
    digits = draw(st.integers(1, 10**9))
    scale = draw(st.integers(0, 8))
    return Rate.parse(base, quote, f"{digits}E-{scale}")


@st.composite
def returns_to_settle(draw: st.DrawFn, seller_id: str | None = None) -> ReturnToSettle:
    buyer = draw(st.sampled_from(CURRENCIES))
    seller_currency = draw(st.sampled_from(CURRENCIES))
    lines = tuple(
        ReturnedLine(f"SKU-{n}", draw(st.integers(0, 10**9)), draw(st.integers(0, 10_000)))
        for n in range(draw(st.integers(1, 4)))
    )
    item = sum(line.item_price for line in lines)
    shipping = draw(st.integers(0, 10**6))
    restocking = draw(st.integers(0, item + shipping))
    return_shipping = draw(st.integers(0, item + shipping - restocking))
    liable = draw(st.sampled_from(list(Liable)))
    return ReturnToSettle(
        return_id=draw(st.from_regex(r"RMA-[0-9A-F]{8}", fullmatch=True)),
        order_id="O-1",
        liable=liable,
        charges=ReturnCharges(buyer, lines, shipping, restocking, return_shipping),
        sold_by=SoldBy(
            seller_id or draw(st.sampled_from(["S-1", "S-2"])),
            seller_currency,
            draw(rates(buyer, seller_currency)),
        ),
        carrier_id="DHL" if liable is Liable.CARRIER else None,
    )


terms_strategy = st.builds(
    SettlementTerms,
    commission_credit=st.sampled_from(list(CommissionCredit)),
    partial_credit_bps=st.integers(0, 10_000),
    fees_to=st.sampled_from(list(FeesTo)),
    return_label_minor=st.integers(0, 10_000),
)


def both_entries(settled: ReturnToSettle, terms: SettlementTerms) -> list[JournalEntry]:
    charges = settled.charges
    refund = refund_entry(settled.return_id, charges.refunded, charges.currency, 1, "psp-a")
    return [e for e in (refund, liability_entry(settled, terms, 2)) if e is not None]


def balances(entries: list[JournalEntry]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for entry in entries:
        for posting in entry.postings:
            totals[posting.account] += posting.amount_minor
    return {name: total for name, total in totals.items() if total}


@settings(max_examples=400, deadline=None)
@given(returns_to_settle(), terms_strategy)
def test_every_entry_balances_and_the_clearing_account_ends_at_zero(
    settled: ReturnToSettle, terms: SettlementTerms
) -> None:
    entries = both_entries(settled, terms)
    for entry in entries:
        assert imbalance(entry.postings) == {}
    clearing = [a for a in balances(entries) if kind_of(a) is AccountKind.RETURNS_CLEARING]
    assert clearing == []


@settings(max_examples=400, deadline=None)
@given(returns_to_settle(), terms_strategy)
def test_the_seller_lines_and_the_residue_are_the_converted_whole(
    settled: ReturnToSettle, terms: SettlementTerms
) -> None:
    entry = liability_entry(settled, terms, 2)
    if entry is None:
        assert settled.charges.refunded == 0
        return
    by_kind: dict[AccountKind, int] = defaultdict(int)
    seller_currency = settled.sold_by.currency
    for posting in entry.postings:
        if posting.currency == seller_currency:
            by_kind[kind_of(posting.account)] += posting.amount_minor
    if settled.liable in (Liable.PLATFORM, Liable.CARRIER):
        assert by_kind[AccountKind.SELLER_PAYABLE] == 0
        return
    if seller_currency == settled.charges.currency:
        assert AccountKind.FX_CONVERSION not in by_kind and AccountKind.ROUNDING not in by_kind
        return
    seller_side = by_kind[AccountKind.SELLER_PAYABLE] + by_kind[AccountKind.ROUNDING]
    assert seller_side == -by_kind[AccountKind.FX_CONVERSION]  # the converted whole
    buyer_side = sum(
        p.amount_minor
        for p in entry.postings
        if kind_of(p.account) is AccountKind.FX_CONVERSION and p.currency != seller_currency
    )
    assert abs(exact(buyer_side, settled.sold_by.rate) + by_kind[AccountKind.FX_CONVERSION]) <= (
        Fraction(1, 2)
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(returns_to_settle(seller_id="S-1"), min_size=1, max_size=20), terms_strategy)
def test_a_ledger_of_many_returns_balances_in_every_currency(
    many: list[ReturnToSettle], terms: SettlementTerms
) -> None:
    entries = [entry for settled in many for entry in both_entries(settled, terms)]
    per_currency: dict[str, int] = defaultdict(int)
    for entry in entries:
        for posting in entry.postings:
            per_currency[posting.currency] += posting.amount_minor
    assert {c: t for c, t in per_currency.items() if t} == {}


def test_a_seller_liable_return_in_the_same_currency() -> None:
    lines = (ReturnedLine("SKU-1", 10_000, 1_500), ReturnedLine("SKU-2", 15, 1_000))
    settled = ReturnToSettle(
        "RMA-1",
        "O-1",
        Liable.SELLER,
        ReturnCharges("EUR", lines, shipping_fee=500),
        SoldBy("S-1", "EUR", Rate.identity("EUR")),
    )
    entry = liability_entry(settled, SettlementTerms(return_label_minor=400), 2)
    assert entry is not None
    seller = [p for p in entry.postings if kind_of(p.account) is AccountKind.SELLER_PAYABLE]
    assert [(p.line_type, p.amount_minor) for p in seller] == [
        (LineType.ITEM_PRICE, 10_000),
        (LineType.COMMISSION, -1_500),
        (LineType.ITEM_PRICE, 15),
        (LineType.COMMISSION, -2),  # 1.5 → 2, half to even, per line
        (LineType.SHIPPING_FEE, 500),
        (LineType.RETURN_SHIPPING, 400),
    ]
    assert {party_of(p.account) for p in seller} == {"S-1"}
    assert balances([entry])["commission:EUR"] == 1_502


def test_a_cross_border_return_books_its_rounding_residue() -> None:
    rate = Rate.parse("EUR", "GBP", "0.8563")
    settled = ReturnToSettle(
        "RMA-2",
        "O-2",
        Liable.BUYER,
        ReturnCharges(
            "EUR", (ReturnedLine("SKU-2", 1_999, 1_250),), restocking_fee=1, return_shipping=1
        ),
        SoldBy("S-2", "GBP", rate),
    )
    entry = liability_entry(settled, SettlementTerms(), 2)
    assert entry is not None
    totals = balances([entry])
    # lines 1999, -250 (commission, half to even of 249.875), -1, -1 → 1712, -214, -1, -1
    assert totals["seller_payable:S-2:GBP"] == 1_712 - 214 - 1 - 1
    assert totals["fx_conversion:EUR"] == 1_999 - 250 - 1 - 1
    assert totals["fx_conversion:GBP"] == -convert(1_747, rate)
    assert "rounding:GBP" not in totals  # 1,495.96 → 1,496: the lines' sum, no residue
    yen = Rate.parse("EUR", "JPY", "162.37")
    settled = ReturnToSettle(
        "RMA-4",
        "O-4",
        Liable.SELLER,
        ReturnCharges("EUR", (ReturnedLine("SKU-4", 1_999, 0),), shipping_fee=1),
        SoldBy("S-3", "JPY", yen),
    )
    entry = liability_entry(settled, SettlementTerms(), 2)
    assert entry is not None
    totals = balances([entry])
    # 3,245.77 → 3,246 and 1.62 → 2 on the statement; the whole 3,247.40 → 3,247
    assert totals["seller_payable:S-3:JPY"] == 3_248
    assert totals["rounding:JPY"] == -1
    assert totals["fx_conversion:JPY"] == -3_247


def test_commission_credit_per_policy() -> None:
    assert commission_credit(10_000, 1_500, SettlementTerms()) == 1_500
    assert commission_credit(10_000, 1_500, SettlementTerms(CommissionCredit.KEPT)) == 0
    partial = SettlementTerms(CommissionCredit.PARTIAL, partial_credit_bps=8_000)
    assert commission_credit(10_000, 1_500, partial) == 1_200
    assert commission_credit(5, 1_000, SettlementTerms()) == 0  # 0.5 → 0 (half to even)
    assert commission_credit(15, 1_000, SettlementTerms()) == 2  # 1.5 → 2


def test_the_same_step_of_the_same_return_gets_the_same_id() -> None:
    first = refund_entry("RMA-1", 100, "EUR", 1, "psp-a")
    again = refund_entry("RMA-1", 100, "EUR", 99, "psp-a")
    other = refund_entry("RMA-2", 100, "EUR", 1, "psp-a")
    assert first and again and other
    assert first.entry_id == again.entry_id != other.entry_id
    assert refund_entry("RMA-1", 0, "EUR", 1, "psp-a") is None


def test_a_correction_is_a_reversing_entry() -> None:
    original = refund_entry("RMA-1", 100, "EUR", 1, "psp-a")
    assert original is not None
    undone = reversal(original, 5, "refund reversed by the provider")
    assert undone.reverses == original.entry_id and undone.entry_id != original.entry_id
    assert balances([original, undone]) == {}
    assert reversal(undone, 6, "again").entry_id != original.entry_id


def test_an_entry_that_does_not_balance_is_refused() -> None:
    with pytest.raises(LedgerError, match="does not balance"):
        JournalEntry("e", "RMA-1", "x", 1, (Posting("a:EUR", 1, "EUR"),))
    with pytest.raises(LedgerError):
        Posting("a:EUR", 1.5, "EUR")  # type: ignore[arg-type]
    with pytest.raises(LedgerError):
        ReturnCharges(
            "EUR", (ReturnedLine("SKU-1", 100, 0),), restocking_fee=80, return_shipping=30
        )
    with pytest.raises(LedgerError):
        ReturnedLine("SKU-1", 100, 10_001)


@pytest.mark.parametrize("outcome", [ClaimOutcome.REJECTED, ClaimOutcome.PAID])
def test_a_carrier_claim_clears_when_rejected_or_paid(outcome: ClaimOutcome) -> None:
    settled = ReturnToSettle(
        "RMA-3",
        "O-3",
        Liable.CARRIER,
        ReturnCharges("EUR", (ReturnedLine("SKU-3", 5_000, 1_000),)),
        SoldBy("S-1", "EUR", Rate.identity("EUR")),
        carrier_id="DHL",
    )
    entries = both_entries(settled, SettlementTerms())
    assert balances(entries)["carrier_claims:DHL:EUR"] == 5_000
    assert claim_entry("RMA-3", "DHL", 5_000, "EUR", ClaimOutcome.ACCEPTED, 3) is None
    closing = claim_entry("RMA-3", "DHL", 5_000, "EUR", outcome, 4, paid_minor=4_000)
    assert closing is not None
    totals = balances([*entries, closing])
    assert "carrier_claims:DHL:EUR" not in totals
    expected_written_off = 5_000 if outcome is ClaimOutcome.REJECTED else 1_000
    assert totals["carrier_claims_written_off:EUR"] == expected_written_off


def test_rates_are_exact_decimals() -> None:
    assert exact(1, Rate.parse("JPY", "KWD", "0.00206")) == Fraction(206, 100)
    assert convert_lines([1, 1, 1], Rate.parse("EUR", "EUR", "1")).residue == 0
    for bad in ("0", "-1", "abc", "NaN", "Infinity", "1" * 30):
        with pytest.raises(FxError):
            Rate.parse("EUR", "GBP", bad)
    with pytest.raises(FxError):
        Rate.parse("EUR", "EUR", "1.1")
    with pytest.raises(FxError):
        Rate.parse("EUR", "XXX", "1")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(returns_to_settle(), st.integers(0, 4)), min_size=1, max_size=15),
    terms_strategy,
)
def test_statements_over_cycles_sum_to_the_sellers_ledger_balance(
    many: list[tuple[ReturnToSettle, int]], terms: SettlementTerms
) -> None:
    """Any mix of returns, liabilities and currencies booked into any of five cycles: each
    seller's statements, chained cycle after cycle (a negative balance carried), pay out
    plus carry exactly what the ledger says the marketplace owes the seller."""
    lines: dict[tuple[str, str], dict[int, list[StatementLine]]] = defaultdict(
        lambda: defaultdict(list)
    )
    payable: dict[tuple[str, str], int] = defaultdict(int)
    for n, (settled, cycle_no) in enumerate(many):
        entry = liability_entry(settled, terms, n)
        for posting in entry.postings if entry else ():
            if kind_of(posting.account) is not AccountKind.SELLER_PAYABLE:
                continue
            key = (party_of(posting.account) or "", posting.currency)
            payable[key] += posting.amount_minor
            lines[key][cycle_no].append(
                StatementLine(
                    entry.entry_id,
                    settled.return_id,
                    "O-1",
                    posting.sku,
                    posting.line_type or "",
                    posting.description,
                    -posting.amount_minor,  # the seller's side
                    n,
                )
            )
    for key, by_cycle in lines.items():
        previous, paid_out = None, 0
        for number in range(5):
            previous = statement(*key, f"DE-{number:05d}", previous, by_cycle.get(number, []))
            paid_out += previous.payout_minor
        assert previous is not None
        assert paid_out + previous.carried_forward_minor == -payable[key]
