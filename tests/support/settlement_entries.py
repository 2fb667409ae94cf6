"""Ledger entries the settlement tests book: a seller-liable return charged in DE."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from services.decisions.refunds.order_model import Liable
from services.decisions.settlement.fx import Rate
from services.decisions.settlement.journal import JournalEntry
from services.decisions.settlement.return_postings import (
    ReturnCharges,
    ReturnedLine,
    ReturnToSettle,
    SettlementTerms,
    SoldBy,
    liability_entry,
)

BERLIN = ZoneInfo("Europe/Berlin")


def ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=BERLIN).timestamp() * 1000)


def charged(return_id: str, booked_at_ms: int, price: int = 10_000) -> JournalEntry:
    settled = ReturnToSettle(
        return_id,
        f"O-{return_id}",
        Liable.SELLER,
        ReturnCharges("EUR", (ReturnedLine("SKU-1", price, 1_000),)),
        SoldBy("S-1", "EUR", Rate.identity("EUR")),
        market="DE",
    )
    entry = liability_entry(settled, SettlementTerms(), booked_at_ms)
    assert entry is not None
    return entry
