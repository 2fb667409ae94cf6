"""The ledger in PostgreSQL (an adapter for services/decisions/settlement): books journal
entries exactly once, together with the Kafka offsets they were read up to, in one
transaction; reads the offsets back for the consumer to start from, balances, and drops
months past retention.

A booking transaction inserts each entry's id into `booked_entries` first; an id already
there (a redelivered or replayed event) books nothing. Postings are checked balanced per
currency by the database at commit, and no row is ever updated or deleted (triggers):
a month's partitions are dropped whole once past retention.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from services.decisions.settlement.cycles import cycle_for_entry
from services.decisions.settlement.journal import JournalEntry
from services.settlement.cycle_calendar import CycleCalendar

PARTITION_LOCK = "boomerang-settlement-partitions"
PARTITIONED = ("journal_entries", "postings")


@dataclass(frozen=True)
class Booking:
    booked: list[str] = field(default_factory=list)  # entry ids written now
    duplicates: list[str] = field(default_factory=list)  # already in the ledger


def cycle_lock(market: str) -> str:
    """The advisory lock bookings share and closing a market's cycle takes alone."""
    return f"boomerang-settlement-cycle:{market}"


def month_of(at_ms: int) -> tuple[int, int]:
    at = datetime.fromtimestamp(at_ms / 1000, UTC)
    return at.year, at.month


def _month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def _partition(table: str, year: int, month: int) -> str:
    return f"{table}_y{year:04d}m{month:02d}"


class LedgerStore:
    def __init__(self, conn: AsyncConnection, consumer: str) -> None:
        self.conn = conn
        self.consumer = consumer
        self._months: set[tuple[int, int]] = set()

    async def stored_offsets(self) -> dict[tuple[str, int], int]:
        """(topic, partition) → the next offset to read, as booked."""
        cursor = await self.conn.execute(
            "SELECT topic, partition, next_offset FROM consumer_offsets WHERE consumer = %s",
            (self.consumer,),
        )
        return {(topic, part): offset for topic, part, offset in await cursor.fetchall()}

    async def book(
        self,
        entries: Sequence[JournalEntry],
        offsets: Mapping[tuple[str, int], int],
        calendar: CycleCalendar | None = None,
    ) -> Booking:
        """Write the entries not booked before and move the offsets, in one transaction. An
        entry with a market goes into its settlement cycle (`calendar`): its own, or the
        first open one after it when that is closed (a shared lock per market: closing a
        cycle waits for bookings in flight, services/settlement/statements_store.py)."""
        await self.ensure_months(month_of(entry.booked_at_ms) for entry in entries)
        booking = Booking()
        # per market, its closed cycles: read once per transaction, under the shared lock
        # held to its end (closing cannot change them meanwhile)
        closed: dict[str, set[int]] = {}
        async with self.conn.transaction(), self.conn.cursor() as cursor:
            for entry in entries:
                booked_at = datetime.fromtimestamp(entry.booked_at_ms / 1000, UTC)
                await cursor.execute(
                    "INSERT INTO booked_entries (entry_id, booked_at) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING RETURNING entry_id",
                    (entry.entry_id, booked_at),
                )
                if await cursor.fetchone() is None:
                    booking.duplicates.append(entry.entry_id)
                    continue
                market = entry.references.get("market") or None
                number = None
                if market is not None and calendar is not None:
                    if market not in closed:
                        closed[market] = await self._closed_cycles(market)
                    rule, zone = calendar.rule_and_zone(market)
                    number = cycle_for_entry(rule, zone, entry.booked_at_ms, closed[market]).number
                await cursor.execute(
                    "INSERT INTO journal_entries"
                    " (entry_id, booked_at, return_id, step, reverses, refs, market, cycle_number)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        entry.entry_id,
                        booked_at,
                        entry.return_id,
                        entry.step,
                        entry.reverses,
                        Jsonb(entry.references),
                        market,
                        number,
                    ),
                )
                await cursor.executemany(
                    "INSERT INTO postings (entry_id, booked_at, line_no, account, amount_minor,"
                    " currency, line_type, description, sku)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [
                        (
                            entry.entry_id,
                            booked_at,
                            line_no,
                            posting.account,
                            posting.amount_minor,
                            posting.currency,
                            posting.line_type,
                            posting.description,
                            posting.sku,
                        )
                        for line_no, posting in enumerate(entry.postings, 1)
                    ],
                )
                booking.booked.append(entry.entry_id)
            if offsets:
                await cursor.executemany(
                    "INSERT INTO consumer_offsets (consumer, topic, partition, next_offset)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (consumer, topic, partition)"
                    " DO UPDATE SET next_offset ="
                    " GREATEST(consumer_offsets.next_offset, EXCLUDED.next_offset)",
                    [(self.consumer, t, p, offset) for (t, p), offset in offsets.items()],
                )
        return booking

    async def _closed_cycles(self, market: str) -> set[int]:
        """The market's closed cycles, its cycle lock taken shared for the transaction."""
        await self.conn.execute(
            "SELECT pg_advisory_xact_lock_shared(hashtext(%s))", (cycle_lock(market),)
        )
        cursor = await self.conn.execute(
            "SELECT number FROM settlement_cycles WHERE market = %s AND closed_at IS NOT NULL",
            (market,),
        )
        return {number for (number,) in await cursor.fetchall()}

    async def ensure_months(self, months: Iterable[tuple[int, int]]) -> None:
        """The monthly partitions for these booking months. A month is remembered once
        seen to exist (not when created here: the caller's transaction may still roll it
        back)."""
        missing = sorted(set(months) - self._months)
        if not missing:
            return
        async with self.conn.transaction():
            await self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (PARTITION_LOCK,))
            for year, month in missing:
                names = [_partition(table, year, month) for table in PARTITIONED]
                cursor = await self.conn.execute(
                    "SELECT count(to_regclass(name)) FROM unnest(%s::text[]) AS name", (names,)
                )
                row = await cursor.fetchone()
                if row is not None and row[0] == len(names):
                    self._months.add((year, month))
                    continue
                start, end = _month_bounds(year, month)
                for table, name in zip(PARTITIONED, names, strict=True):
                    await self.conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table}"
                        f" FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                    )

    async def imbalance(self) -> dict[str, int]:
        """Per currency, the sum of every posting when it is not zero (empty: balanced)."""
        cursor = await self.conn.execute(
            "SELECT currency, sum(amount_minor) FROM postings GROUP BY currency"
            " HAVING sum(amount_minor) <> 0"
        )
        return {currency.strip(): int(total) for currency, total in await cursor.fetchall()}

    async def balances(self, account_prefix: str = "") -> dict[str, int]:
        """Each account's balance (debits positive), for accounts starting with the prefix."""
        cursor = await self.conn.execute(
            "SELECT account, sum(amount_minor) FROM postings WHERE account LIKE %s"
            " GROUP BY account HAVING sum(amount_minor) <> 0",
            (account_prefix.replace("%", r"\%").replace("_", r"\_") + "%",),
        )
        return {name: int(total) for name, total in await cursor.fetchall()}

    async def drop_months_before(self, year: int, month: int) -> list[str]:
        """Retention: drop the partitions of months before (year, month) and forget those
        entries' ids; the partitions dropped."""
        cursor = await self.conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = ANY(%s)",
            (list(PARTITIONED),),
        )
        cutoff = f"y{year:04d}m{month:02d}"
        old = sorted(name for (name,) in await cursor.fetchall() if name.rsplit("_", 1)[1] < cutoff)
        start, _ = _month_bounds(year, month)
        async with self.conn.transaction():
            for name in old:
                await self.conn.execute(f"DROP TABLE {name}")
            await self.conn.execute("DELETE FROM booked_entries WHERE booked_at < %s", (start,))
        self._months = {m for m in self._months if m >= (year, month)}
        return old
