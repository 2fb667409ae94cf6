"""A decided dispute that refunded the buyer more, as a journal entry (pure): its refund is
booked from its RefundIssued like any refund; DisputeDecided charges the party that pays,
balanced in every currency, with the seller's line converted into their currency."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.decisions.settlement.accounts import AccountKind
from services.decisions.settlement.completed_returns import NotSettleable, decided_dispute
from services.decisions.settlement.fx import Rate
from services.decisions.settlement.journal import imbalance
from services.decisions.settlement.return_postings import (
    FeesTo,
    LineType,
    SettlementTerms,
    SoldBy,
    dispute_entry,
    exchange_charge_entry,
    refund_entry,
)
from tests.unit.test_settlement_completions import order_of

ORDER = order_of([{"line_id": "L1", "sku": "SKU-1"}])


def decided(amount: int = 740, liable: str | None = "SELLER", **fields: Any) -> dict[str, Any]:
    return {
        "envelope": {"return_id": "RMA-D-1"},
        "dispute_id": "RMA-D-1-D1",
        "decision": "PARTIAL_REFUND",
        "decided_by": "reinspection",
        "refund": {"amount_minor": amount, "currency": "EUR"} if amount else None,
        "liable": liable,
        "carrier_id": "double-express",
        "order_ref": "O-1",
        "decided_at": 1_800_000_000_000,
        **fields,
    }


def accounts(entry) -> dict[str, int]:
    return {posting.account: posting.amount_minor for posting in entry.postings}


@pytest.mark.parametrize(
    ("liable", "decided_by", "fees_to", "charged"),
    [
        ("SELLER", "reinspection", FeesTo.SELLER, f"{AccountKind.SELLER_PAYABLE.value}:S-1:EUR"),
        ("SELLER", "agent:a-1", FeesTo.PLATFORM, f"{AccountKind.SELLER_PAYABLE.value}:S-1:EUR"),
        ("SELLER", "reinspection", FeesTo.PLATFORM, f"{AccountKind.FEES_RETAINED.value}:EUR"),
        ("PLATFORM", "agent:a-1", FeesTo.SELLER, f"{AccountKind.PLATFORM_EXPENSE.value}:EUR"),
        (
            "CARRIER",
            "agent:a-1",
            FeesTo.SELLER,
            f"{AccountKind.CARRIER_CLAIMS.value}:double-express:EUR",
        ),
    ],
)
def test_the_payer_is_charged_what_the_dispute_refunded(liable, decided_by, fees_to, charged):
    dispute = decided_dispute(decided(liable=liable, decided_by=decided_by), ORDER)
    entry = dispute_entry(dispute, SettlementTerms(fees_to=fees_to), 1)
    assert not imbalance(entry.postings)
    assert accounts(entry)[charged] == 740
    assert accounts(entry)[f"{AccountKind.RETURNS_CLEARING.value}:EUR"] == -740
    assert entry.step == "dispute:RMA-D-1-D1"
    # with the refund's own entry, the clearing account is square again
    refund = refund_entry("RMA-D-1", 740, "EUR", 1, "psp-double", "re_1", "RMA-D-1-dispute-1")
    assert refund is not None and refund.step == "refund:RMA-D-1-dispute-1"
    clearing = f"{AccountKind.RETURNS_CLEARING.value}:EUR"
    assert accounts(entry)[clearing] + accounts(refund)[clearing] == 0


def test_a_seller_line_is_a_dispute_adjustment_in_the_sellers_currency():
    order = order_of([{"line_id": "L1", "sku": "SKU-1"}], seller_currency="GBP")
    entry = dispute_entry(decided_dispute(decided(), order), SettlementTerms(), 1)
    [line] = [p for p in entry.postings if p.line_type]
    assert (line.line_type, line.currency) == (LineType.DISPUTE_ADJUSTMENT, "GBP")
    assert line.amount_minor == 634  # 740 EUR at 0.8563, half to even
    assert not imbalance(entry.postings)


def test_a_dispute_that_cannot_be_settled_says_why():
    with pytest.raises(NotSettleable, match="refunded nothing"):
        decided_dispute(decided(amount=0), ORDER)
    with pytest.raises(NotSettleable, match="no liable party"):
        decided_dispute(decided(liable=None), ORDER)
    with pytest.raises(NotSettleable, match="never the buyer"):
        decided_dispute(decided(liable="BUYER"), ORDER)
    other = decided(refund={"amount_minor": 5, "currency": "USD"})
    with pytest.raises(NotSettleable, match="order in EUR"):
        decided_dispute(other, ORDER)


@settings(max_examples=200, deadline=None)
@given(
    amount=st.integers(1, 10**9),
    liable=st.sampled_from(["SELLER", "PLATFORM", "CARRIER"]),
    seller_currency=st.sampled_from(["EUR", "GBP"]),
    reinspected=st.booleans(),
    fees_to=st.sampled_from(list(FeesTo)),
)
def test_every_dispute_entry_balances(amount, liable, seller_currency, reinspected, fees_to):
    order = order_of([{"line_id": "L1", "sku": "SKU-1"}], seller_currency=seller_currency)
    by = "reinspection" if reinspected else "agent:a-1"
    dispute = decided_dispute(decided(amount, liable, decided_by=by), order)
    entry = dispute_entry(dispute, SettlementTerms(fees_to=fees_to), 1)
    assert not imbalance(entry.postings)
    assert entry.entry_id == dispute_entry(dispute, SettlementTerms(fees_to=fees_to), 2).entry_id


@settings(max_examples=100, deadline=None)
@given(amount=st.integers(1, 10**9), seller_currency=st.sampled_from(["EUR", "GBP"]))
def test_an_exchange_charge_is_owed_to_the_seller_and_balances(amount, seller_currency):
    order = order_of([{"line_id": "L1", "sku": "SKU-1"}], seller_currency=seller_currency)
    rate = Rate.parse("EUR", order["seller_currency"], order["fx_rate"])
    sold_by = SoldBy("S-1", seller_currency, rate)
    entry = exchange_charge_entry(
        "RMA-X", amount, "EUR", "psp-double", sold_by, 1, "ch_1", "RMA-X-exchange-charge"
    )
    assert not imbalance(entry.postings)
    assert accounts(entry)[f"{AccountKind.PSP_CLEARING.value}:psp-double:EUR"] == amount
    [line] = [p for p in entry.postings if p.line_type]
    assert (line.line_type, line.currency) == (LineType.EXCHANGE_DIFFERENCE, seller_currency)
    assert line.amount_minor < 0  # owed to the seller
    assert entry.step == "charge:RMA-X-exchange-charge"
