"""The settlement ledger on a real PostgreSQL (services/settlement/ledger_store.py): the
schema migrates once, entries are booked exactly once with the offsets they were read up
to, in one transaction; the database itself refuses an unbalanced entry and any change to
a booked row; months past retention are dropped whole."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import AsyncConnection

from services.decisions.refunds.order_model import Liable
from services.decisions.settlement.fx import Rate
from services.decisions.settlement.journal import JournalEntry, reversal
from services.decisions.settlement.return_postings import (
    ReturnCharges,
    ReturnedLine,
    ReturnToSettle,
    SettlementTerms,
    SoldBy,
    liability_entry,
    refund_entry,
)
from services.settlement.ledger_store import LedgerStore
from services.settlement.schema_migrations import apply_migrations, migrations

TOPIC = "boomerang.refund.events"
DEC_2026 = int(datetime(2026, 12, 6, tzinfo=UTC).timestamp() * 1000)
JAN_2027 = int(datetime(2027, 1, 2, tzinfo=UTC).timestamp() * 1000)


def entries_of(return_id: str, booked_at_ms: int) -> list[JournalEntry]:
    settled = ReturnToSettle(
        return_id,
        "O-1",
        Liable.SELLER,
        ReturnCharges("EUR", (ReturnedLine("SKU-1", 1_999, 1_500),), restocking_fee=100),
        SoldBy("S-1", "GBP", Rate.parse("EUR", "GBP", "0.8563")),
    )
    refund = refund_entry(return_id, 1_899, "EUR", booked_at_ms, "psp-a", "ref-1")
    liability = liability_entry(settled, SettlementTerms(), booked_at_ms + 1)
    assert refund and liability
    return [refund, liability]


def run(conninfo: str, scenario) -> object:
    async def main() -> object:
        async with await AsyncConnection.connect(conninfo) as conn:
            return await scenario(conn)

    return asyncio.run(main())


def test_migrations_apply_once(postgres_database: str) -> None:
    async def scenario(conn: AsyncConnection) -> tuple[list[str], list[str]]:
        return await apply_migrations(conn), await apply_migrations(conn)

    first, second = run(postgres_database, scenario)
    assert first == [f"{m.version:04d}_{m.name}" for m in migrations()] and second == []
    assert first[0] == "0001_ledger"


def test_a_redelivered_batch_books_nothing_and_the_offsets_move_with_the_entries(
    postgres_database: str,
) -> None:
    async def scenario(conn: AsyncConnection) -> None:
        await apply_migrations(conn)
        store = LedgerStore(conn, "settlement")
        assert await store.stored_offsets() == {}
        batch = entries_of("RMA-1", DEC_2026) + entries_of("RMA-2", JAN_2027)
        first = await store.book(batch, {(TOPIC, 0): 11, (TOPIC, 3): 4})
        assert len(first.booked) == 4 and first.duplicates == []
        balances = await store.balances()
        again = await store.book(batch, {(TOPIC, 0): 11})  # a replay of the same records
        assert again.booked == [] and len(again.duplicates) == 4
        assert await store.balances() == balances
        assert await store.imbalance() == {}
        assert balances["seller_payable:S-1:GBP"] == 2 * (1_712 - 257 - 86)
        assert await store.stored_offsets() == {(TOPIC, 0): 11, (TOPIC, 3): 4}
        await store.book([], {(TOPIC, 0): 9})  # an older position never moves it back
        assert (await store.stored_offsets())[(TOPIC, 0)] == 11
        undone = reversal(batch[0], DEC_2026 + 10, "refund reversed")
        assert (await store.book([undone], {})).booked == [undone.entry_id]
        assert "psp_clearing:psp-a:EUR" in await store.balances()  # RMA-2's refund stays

    run(postgres_database, scenario)


def test_the_database_refuses_an_unbalanced_entry_and_any_change(postgres_database: str) -> None:
    async def scenario(conn: AsyncConnection) -> None:
        await apply_migrations(conn)
        store = LedgerStore(conn, "settlement")
        await store.book(entries_of("RMA-1", DEC_2026), {})
        await conn.commit()
        with pytest.raises(psycopg.errors.RaiseException, match="does not balance"):
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO postings VALUES"
                    " ('00000000-0000-0000-0000-000000000001', %s, 1, 'x:EUR', 5, 'EUR', null, '')",
                    (datetime(2026, 12, 6, tzinfo=UTC),),
                )
        for statement in (
            "UPDATE postings SET amount_minor = amount_minor + 1",
            "DELETE FROM journal_entries",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                async with conn.transaction():
                    await conn.execute(statement)

    run(postgres_database, scenario)


def test_retention_drops_whole_months(postgres_database: str) -> None:
    async def scenario(conn: AsyncConnection) -> None:
        await apply_migrations(conn)
        store = LedgerStore(conn, "settlement")
        await store.book(entries_of("RMA-1", DEC_2026) + entries_of("RMA-2", JAN_2027), {})
        dropped = await store.drop_months_before(2027, 1)
        assert dropped == ["journal_entries_y2026m12", "postings_y2026m12"]
        cursor = await conn.execute("SELECT DISTINCT return_id FROM journal_entries")
        assert await cursor.fetchall() == [("RMA-2",)]
        assert await store.imbalance() == {}

    run(postgres_database, scenario)
