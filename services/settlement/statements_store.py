"""Closing settlement cycles and reading statements (an adapter for
services/decisions/settlement/statements.py).

Closing a market's cycle, in one transaction holding that market's cycle lock alone (so
no booking is in flight): every earlier open cycle that has entries is closed first, in
order; for each seller and currency with lines in the cycle, or a balance carried into
it, a statement is written (opening = the last statement's carried balance); the cycle is
marked closed. Closing again returns the same statements; a cycle not yet ended cannot
be closed. Statements are never updated (a trigger refuses it).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from services.decisions.settlement.accounts import AccountKind
from services.decisions.settlement.cycles import Cycle, cycle
from services.decisions.settlement.statements import Statement, StatementLine, statement
from services.settlement.cycle_calendar import CycleCalendar
from services.settlement.ledger_store import cycle_lock

PAYABLE = AccountKind.SELLER_PAYABLE.value


class CycleNotEnded(ValueError):
    """Closing a cycle that has not ended yet."""


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


async def close_cycle(
    conn: AsyncConnection, calendar: CycleCalendar, market: str, number: int, now_ms: int
) -> list[dict[str, Any]]:
    rule, zone = calendar.rule_and_zone(market)
    closing = cycle(rule, zone, number)
    if closing.end_ms > now_ms:
        raise CycleNotEnded(f"cycle {closing.cycle_id} ends at {_at(closing.end_ms).isoformat()}")
    async with conn.transaction():
        # the ledger's tables first, then the market's lock: a booking that creates a
        # month's partition holds the tables and then asks for the lock (the other order
        # deadlocked)
        await conn.execute("LOCK TABLE journal_entries, postings IN ACCESS SHARE MODE")
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (cycle_lock(market),))
        cursor = await conn.execute(
            "SELECT DISTINCT cycle_number FROM journal_entries j WHERE market = %s"
            " AND cycle_number < %s AND NOT EXISTS (SELECT 1 FROM settlement_cycles c"
            " WHERE c.market = j.market AND c.number = j.cycle_number"
            " AND c.closed_at IS NOT NULL) ORDER BY 1",
            (market, number),
        )
        for (earlier,) in await cursor.fetchall():
            await _close_one(conn, cycle(rule, zone, earlier))
        await _close_one(conn, closing)
    return await statements_of_cycle(conn, closing.cycle_id)


async def _close_one(conn: AsyncConnection, closing: Cycle) -> None:
    cursor = await conn.execute(
        "SELECT closed_at FROM settlement_cycles WHERE market = %s AND number = %s",
        (closing.market, closing.number),
    )
    row = await cursor.fetchone()
    if row is not None and row[0] is not None:
        return  # closed before: its statements stand
    for made in await _cycle_statements(conn, closing):
        await conn.execute(
            "INSERT INTO statements (seller_id, currency, market, cycle_number, cycle_id,"
            " opening_minor, closing_minor, payout_minor, carried_minor, totals, lines)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                made.seller_id,
                made.currency,
                closing.market,
                closing.number,
                closing.cycle_id,
                made.opening_minor,
                made.closing_minor,
                made.payout_minor,
                made.carried_forward_minor,
                Jsonb(made.totals),
                Jsonb([asdict(line) for line in made.lines]),
            ),
        )
    await conn.execute(
        "INSERT INTO settlement_cycles (market, number, starts_at, ends_at, closed_at)"
        " VALUES (%s, %s, %s, %s, now()) ON CONFLICT (market, number)"
        " DO UPDATE SET closed_at = now()",
        (closing.market, closing.number, _at(closing.start_ms), _at(closing.end_ms)),
    )


async def draft_statements(
    conn: AsyncConnection, calendar: CycleCalendar, market: str, number: int
) -> list[dict[str, Any]]:
    """The statements an open cycle would have if it closed now (written nowhere): what a
    seller sees of the cycle running. A closed cycle answers its statements."""
    rule, zone = calendar.rule_and_zone(market)
    drafted = cycle(rule, zone, number)
    closed = await statements_of_cycle(conn, drafted.cycle_id)
    cursor = await conn.execute(
        "SELECT 1 FROM settlement_cycles WHERE market = %s AND number = %s"
        " AND closed_at IS NOT NULL",
        (market, number),
    )
    if await cursor.fetchone() is not None:
        return closed
    return [
        {
            "seller_id": made.seller_id,
            "market": market,
            "currency": made.currency,
            "cycle_id": made.cycle_id,
            "opening_minor": made.opening_minor,
            "closing_minor": made.closing_minor,
            "payout_minor": made.payout_minor,
            "carried_forward_minor": made.carried_forward_minor,
            "totals": made.totals,
            "lines": [asdict(line) | {"currency": made.currency} for line in made.lines],
            "draft": True,
        }
        for made in await _cycle_statements(conn, drafted)
    ]


async def _cycle_statements(conn: AsyncConnection, closing: Cycle) -> list[Statement]:
    """One statement per seller and currency with lines in the cycle or a balance carried
    into it."""
    cursor = await conn.execute(
        "SELECT p.account, p.currency, j.entry_id, j.return_id, j.refs->>'order_id', p.sku,"
        " p.line_type, p.description, p.amount_minor, j.booked_at"
        " FROM postings p JOIN journal_entries j"
        " ON j.entry_id = p.entry_id AND j.booked_at = p.booked_at"
        " WHERE j.market = %s AND j.cycle_number = %s AND p.account LIKE %s",
        (closing.market, closing.number, PAYABLE + ":%"),
    )
    lines: dict[tuple[str, str], list[StatementLine]] = {}
    for (
        account,
        currency,
        entry_id,
        return_id,
        order_ref,
        sku,
        kind,
        text,
        amount,
        at,
    ) in await cursor.fetchall():
        seller_id = account.split(":")[1]
        lines.setdefault((seller_id, currency.strip()), []).append(
            StatementLine(
                str(entry_id),
                return_id,
                order_ref or "",
                sku,
                kind or "",
                text,
                -amount,  # a debit to the payable is charged to the seller
                int(at.timestamp() * 1000),
            )
        )
    previous = await _previous_statements(conn, closing)
    keys = lines.keys() | {k for k, s in previous.items() if s.carried_forward_minor}
    return [
        statement(seller_id, currency, closing.cycle_id, previous.get(key), lines.get(key, []))
        for key in sorted(keys)
        for seller_id, currency in [key]
    ]


async def _previous_statements(
    conn: AsyncConnection, closing: Cycle
) -> dict[tuple[str, str], Statement]:
    """Each seller and currency's latest statement before this cycle (its carried balance
    is the next opening)."""
    cursor = await conn.execute(
        "SELECT DISTINCT ON (seller_id, currency) seller_id, currency, cycle_id, carried_minor"
        " FROM statements WHERE market = %s AND cycle_number < %s"
        " ORDER BY seller_id, currency, cycle_number DESC",
        (closing.market, closing.number),
    )
    found = {}
    for seller_id, currency, cycle_id, carried in await cursor.fetchall():
        # the balance carried is all a later statement needs of it
        found[(seller_id, currency.strip())] = Statement(
            seller_id, currency.strip(), cycle_id, carried, ()
        )
    return found


def _row(row: tuple) -> dict[str, Any]:
    seller_id, currency, cycle_id, opening, closing, payout, carried, totals, lines, market = row
    return {
        "seller_id": seller_id,
        "market": market,
        "currency": currency.strip(),
        "cycle_id": cycle_id,
        "opening_minor": opening,
        "closing_minor": closing,
        "payout_minor": payout,
        "carried_forward_minor": carried,
        "totals": totals,
        "lines": [line | {"currency": currency.strip()} for line in lines],
    }


COLUMNS = (
    "seller_id, currency, cycle_id, opening_minor, closing_minor, payout_minor,"
    " carried_minor, totals, lines, market"
)


async def statements_of_cycle(conn: AsyncConnection, cycle_id: str) -> list[dict[str, Any]]:
    cursor = await conn.execute(
        f"SELECT {COLUMNS} FROM statements WHERE cycle_id = %s ORDER BY seller_id, currency",
        (cycle_id,),
    )
    return [_row(row) for row in await cursor.fetchall()]


async def statements_of_seller(conn: AsyncConnection, seller_id: str) -> list[dict[str, Any]]:
    cursor = await conn.execute(
        f"SELECT {COLUMNS} FROM statements WHERE seller_id = %s"
        " ORDER BY market, cycle_number, currency",
        (seller_id,),
    )
    return [_row(row) for row in await cursor.fetchall()]
