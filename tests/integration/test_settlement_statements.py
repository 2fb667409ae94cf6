"""Settlement cycles on a real PostgreSQL (services/settlement/statements_store.py): a
cycle closed twice yields one set of statements; an entry booked after its cycle closed
lands in the next one; a negative balance is carried into the next statement; a cycle
that has not ended cannot be closed; statements are never updated."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from psycopg import AsyncConnection

from services.decisions.settlement.cycles import cycle_number
from services.settlement.cycle_calendar import CycleCalendar
from services.settlement.ledger_store import LedgerStore
from services.settlement.schema_migrations import apply_migrations
from services.settlement.statements_store import (
    CycleNotEnded,
    close_cycle,
    statements_of_seller,
)
from tests.support.settlement_entries import charged, ms

CALENDAR = CycleCalendar.from_env({})


def test_cycles_close_once_late_entries_move_on_and_balances_carry(postgres_database: str) -> None:
    rule, zone = CALENDAR.rule_and_zone("DE")
    week = cycle_number(rule, zone, ms(2026, 11, 25, 12))  # Wed 25 Nov 2026
    next_week_ms = ms(2026, 12, 2, 12)

    async def scenario() -> None:
        async with await AsyncConnection.connect(postgres_database, autocommit=True) as conn:
            await apply_migrations(conn)
            store = LedgerStore(conn, "settlement")
            await store.book([charged("RMA-1", ms(2026, 11, 25, 12))], {}, CALENDAR)
            with pytest.raises(CycleNotEnded):
                await close_cycle(conn, CALENDAR, "DE", week, ms(2026, 11, 29, 23, 59))
            first = await close_cycle(conn, CALENDAR, "DE", week, ms(2026, 12, 1))
            again = await close_cycle(conn, CALENDAR, "DE", week, ms(2026, 12, 5))
            assert first == again and len(first) == 1
            [closed] = first
            # the seller is charged 10,000 and credited 1,000 commission: −9,000 carried
            assert (closed["opening_minor"], closed["closing_minor"]) == (0, -9_000)
            assert closed["totals"] == {"Commission": 1_000, "ItemPrice": -10_000}
            assert closed["carried_forward_minor"] == -9_000 and closed["payout_minor"] == 0
            # booked late, dated inside the closed week: it goes into the next one
            await store.book([charged("RMA-2", ms(2026, 11, 27, 9), 20_000)], {}, CALENDAR)
            await store.book([charged("RMA-3", next_week_ms, 100)], {}, CALENDAR)
            assert await close_cycle(conn, CALENDAR, "DE", week, ms(2026, 12, 5)) == first
            [later] = await close_cycle(conn, CALENDAR, "DE", week + 1, ms(2026, 12, 8))
            assert later["opening_minor"] == -9_000
            assert {line["return_id"] for line in later["lines"]} == {"RMA-2", "RMA-3"}
            assert later["closing_minor"] == -9_000 - 18_000 - 90
            assert [s["cycle_id"] for s in await statements_of_seller(conn, "S-1")] == [
                f"DE-{week:05d}",
                f"DE-{week + 1:05d}",
            ]
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                await conn.execute("UPDATE statements SET closing_minor = 0")

    asyncio.run(scenario())
