"""Settlement's own clock on a real PostgreSQL (services/settlement/finance_schedule.py):
two settlement processes' schedules closing ended cycles at the same time write one set of
statements; retention deletes what its policy no longer keeps and leaves the rest."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from psycopg import AsyncConnection

from services.settlement.cycle_calendar import CycleCalendar
from services.settlement.finance_schedule import FinanceSchedule, ScheduleSettings
from services.settlement.ledger_store import LedgerStore
from services.settlement.schema_migrations import apply_migrations
from tests.support.settlement_entries import charged, ms

CALENDAR = CycleCalendar.from_env({})


def test_two_schedules_close_an_ended_cycle_once_and_retention_keeps_what_policy_says(
    postgres_database: str,
) -> None:
    settings = ScheduleSettings(carrier_url=None, close_grace_s=0)
    schedules = [FinanceSchedule(postgres_database, CALENDAR, settings) for _ in range(2)]

    async def scenario() -> None:
        async with await AsyncConnection.connect(postgres_database, autocommit=True) as conn:
            await apply_migrations(conn)
            await LedgerStore(conn, "settlement").book(
                [charged("RMA-S1", ms(2026, 11, 4, 12)), charged("RMA-S2", ms(2026, 11, 11, 12))],
                {},
                CALENDAR,
            )
            old = datetime.now(UTC) - timedelta(days=500)
            await conn.execute(
                "INSERT INTO orders (order_ref, seller_id, body, placed_at) VALUES"
                " ('O-old', 'S-1', '{}', %s), ('O-new', 'S-1', '{}', now())",
                (old,),
            )
            await conn.execute(
                'INSERT INTO settlement_rejects (topic, partition, "offset", reason, rejected_at)'
                " VALUES ('t', 0, 1, 'old', %s), ('t', 0, 2, 'new', now())",
                (old,),
            )

            # both processes' jobs at once: each closes what it can under the market's lock
            await asyncio.gather(*(s._once("close", s.close_ended_cycles) for s in schedules))
            await asyncio.gather(*(s._once("close", s.close_ended_cycles) for s in schedules))
            cursor = await conn.execute(
                "SELECT cycle_id, count(*) FROM statements GROUP BY cycle_id ORDER BY cycle_id"
            )
            assert [n for _, n in await cursor.fetchall()] == [1, 1]  # two weeks, one each
            cursor = await conn.execute(
                "SELECT count(*) FROM settlement_cycles WHERE closed_at IS NOT NULL"
            )
            assert (await cursor.fetchone())[0] == 2

            await schedules[0]._once("retention", schedules[0].retention)
            cursor = await conn.execute("SELECT order_ref FROM orders")
            assert [r for (r,) in await cursor.fetchall()] == ["O-new"]
            cursor = await conn.execute("SELECT reason FROM settlement_rejects")
            assert [r for (r,) in await cursor.fetchall()] == ["new"]
            assert schedules[0].last_error == "" and schedules[1].last_error == ""

    asyncio.run(scenario())
