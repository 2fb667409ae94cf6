"""Reconciliation (pure): every category of break found from its cause, nothing else broken,
the same answer for the same inputs, and the entries report lines book."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.decisions.refunds.order_model import Liable
from services.decisions.settlement.journal import imbalance
from services.decisions.settlement.reconciliation import (
    CHARGEBACK,
    REFUND_FAILED,
    REFUNDED,
    REFUNDED_REVERSED,
    BreakCategory,
    ChargedTo,
    FeeTerms,
    LedgerRefund,
    ReportLine,
    SellerLiableReturn,
    reconcile,
    report_line_entry,
)

DAY = date(2026, 12, 1)
FEES = FeeTerms({"*": 20})
TIMING_DAYS = 2


def refund(n: int, amount: int = 10_000, currency: str = "EUR", on: date = DAY) -> LedgerRefund:
    return LedgerRefund(f"R-{n}", "psp", f"R-{n}-refund-1", f"rf_{n}", amount, currency, on)


def line_for(r: LedgerRefund, line_no: int = 0, **changes: object) -> ReportLine:
    fee = FEES.fee(r.provider, r.amount_minor)
    line = ReportLine(
        r.provider,
        r.provider_reference,
        r.merchant_reference,
        REFUNDED,
        r.amount_minor,
        fee,
        r.amount_minor + fee,
        r.currency,
        r.booked_on,
        f"psp-{r.booked_on}",
        line_no,
    )
    return replace(line, **changes)  # type: ignore[arg-type]


def run(
    refunds: list[LedgerRefund],
    lines: list[ReportLine],
    as_of: date = DAY,
    declined: list[tuple[str, str]] | None = None,
    sellers: list[SellerLiableReturn] | None = None,
):
    return reconcile(as_of, refunds, lines, declined or [], sellers or [], FEES, TIMING_DAYS)


def test_matching_lines_match_everything() -> None:
    refunds = [refund(n, 1_000 + n) for n in range(20)]
    result = run(refunds, [line_for(r, n) for n, r in enumerate(refunds)])
    assert (result.matched, result.compared, result.breaks, result.match_rate) == (20, 20, (), 1.0)


@pytest.mark.parametrize(
    ("change", "category"),
    [
        (lambda r: [], BreakCategory.TIMING),
        (lambda r: [line_for(r, gross_minor=r.amount_minor + 1)], BreakCategory.AMOUNT_MISMATCH),
        (lambda r: [line_for(r, currency="USD")], BreakCategory.CURRENCY_MISMATCH),
        (lambda r: [line_for(r, 0), line_for(r, 1)], BreakCategory.DUPLICATE_AT_PSP),
        (lambda r: [line_for(r, fee_minor=27)], BreakCategory.FEE_MISMATCH),
        (lambda r: [line_for(r, type=REFUND_FAILED)], BreakCategory.STATUS_MISMATCH),
    ],
)
def test_each_provider_side_anomaly_is_found_in_its_category(change, category) -> None:
    bent, fine = refund(1), refund(2)
    result = run([bent, fine], [*change(bent), line_for(fine, 5)])
    assert [(b.category, b.reference, b.return_id) for b in result.breaks] == [
        (category, bent.merchant_reference, "R-1")
    ]
    assert (result.matched, result.compared) == (1, 2)


def test_a_refund_never_reported_is_timing_then_missing_after_the_window() -> None:
    late = refund(1)
    assert [b.category for b in run([late], [], DAY + timedelta(1)).breaks] == ["timing"]
    missing = run([late], [], DAY + timedelta(TIMING_DAYS)).breaks
    assert [(b.category, b.age_days) for b in missing] == [("missing_at_psp", TIMING_DAYS)]
    assert missing[0].needs_ticket


def test_a_timing_break_resolves_when_the_line_comes_a_day_later() -> None:
    r = refund(1)
    late_line = line_for(r, booking_date=DAY + timedelta(1))
    assert [b.category for b in run([r], [late_line], DAY).breaks] == ["timing"]
    assert not run([r], [late_line], DAY).breaks[0].needs_ticket
    assert run([r], [late_line], DAY + timedelta(1)).breaks == ()


def test_a_refund_at_the_provider_we_never_made_is_unknown_unless_we_saw_it_declined() -> None:
    theirs = line_for(refund(9))
    unknown = run([], [theirs]).breaks
    assert [(b.category, b.reference) for b in unknown] == [("unknown_at_psp", "R-9-refund-1")]
    declined = run([], [theirs], declined=[("psp", "R-9-refund-1")]).breaks
    assert [b.category for b in declined] == ["status_mismatch"]


def test_a_seller_liable_refund_without_a_seller_debit_is_a_break() -> None:
    sellers = [
        SellerLiableReturn("R-1", DAY - timedelta(3), debited=True),
        SellerLiableReturn("R-2", DAY - timedelta(3), debited=False),
        SellerLiableReturn("R-3", DAY + timedelta(1), debited=False),  # after the day
    ]
    breaks = run([], [], sellers=sellers).breaks
    assert [(b.category, b.return_id, b.age_days) for b in breaks] == [
        ("seller_debit_missing", "R-2", 3)
    ]


def test_lines_and_refunds_after_the_day_are_not_considered() -> None:
    later = refund(1, on=DAY + timedelta(1))
    result = run([later], [line_for(refund(2), booking_date=DAY + timedelta(1))])
    assert (result.compared, result.breaks) == (0, ())


@settings(max_examples=200, deadline=None)
@given(
    amounts=st.lists(st.integers(1, 10**9), min_size=1, max_size=30),
    currencies=st.lists(st.sampled_from(["EUR", "JPY", "KWD", "IDR"]), min_size=30, max_size=30),
    bend=st.lists(
        st.sampled_from(["", "amount", "currency", "duplicate", "fee", "missing", "status"]),
        min_size=30,
        max_size=30,
    ),
    seed=st.integers(0, 10**6),
)
def test_exactly_the_bent_refunds_break_whatever_the_order(amounts, currencies, bend, seed) -> None:
    refunds = [refund(n, a, currencies[n]) for n, a in enumerate(amounts)]
    lines: list[ReportLine] = []
    expected: dict[str, str] = {}
    for n, r in enumerate(refunds):
        kind = bend[n]
        if kind == "missing":
            expected[r.merchant_reference] = "timing"
            continue
        changes = {
            "": {},
            "amount": {"gross_minor": r.amount_minor + 1},
            "currency": {"currency": "USD"},
            "duplicate": {},
            "fee": {"fee_minor": FEES.fee("psp", r.amount_minor) + 1},
            "status": {"type": REFUND_FAILED},
        }[kind]
        lines.append(line_for(r, 2 * n, **changes))
        if kind == "duplicate":
            lines.append(line_for(r, 2 * n + 1))
        if kind:
            expected[r.merchant_reference] = {
                "amount": "amount_mismatch",
                "currency": "currency_mismatch",
                "duplicate": "duplicate_at_psp",
                "fee": "fee_mismatch",
                "status": "status_mismatch",
            }[kind]
    shuffled_refunds, shuffled_lines = refunds[:], lines[:]
    random.Random(seed).shuffle(shuffled_refunds)
    random.Random(seed).shuffle(shuffled_lines)

    result = run(shuffled_refunds, shuffled_lines)

    assert {b.reference: b.category.value for b in result.breaks} == expected
    assert result.matched == len(refunds) - len(expected)
    assert result == run(refunds, lines)  # the order of the inputs changes nothing


def test_a_chargeback_is_charged_to_a_liable_seller_and_a_reversal_owes_the_buyer_again() -> None:
    r = refund(1)
    chargeback = line_for(r, type=CHARGEBACK, provider_reference="cb_1")
    seller = ChargedTo("R-1", Liable.SELLER, "seller_payable:S-1:EUR", "DE", "O-1")

    on_seller = report_line_entry(chargeback, seller, 0)
    on_platform = report_line_entry(chargeback, replace(seller, liable=Liable.PLATFORM), 0)
    reversed_ = report_line_entry(replace(chargeback, type=REFUNDED_REVERSED), ChargedTo(), 0)

    assert on_seller and on_platform and reversed_
    for entry in (on_seller, on_platform, reversed_):
        assert imbalance(entry.postings) == {}
    assert on_seller.postings[0].account == "seller_payable:S-1:EUR"
    # on the seller's statement: the market's cycle and the order
    assert (on_seller.references["market"], on_seller.references["order_id"]) == ("DE", "O-1")
    assert on_platform.postings[0].account == "chargebacks:EUR"
    assert "market" not in on_platform.references
    assert [p.account for p in reversed_.postings] == [
        "psp_clearing:psp:EUR",
        "buyer_refunds_payable:EUR",
    ]
    # the line alone names the entry: booked once, whatever is known of its return when read
    assert on_seller.entry_id == report_line_entry(chargeback, ChargedTo(), 5).entry_id
    assert report_line_entry(line_for(r), seller, 0) is None  # a refund line
