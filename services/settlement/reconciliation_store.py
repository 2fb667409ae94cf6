"""Reconciling a day (an adapter): the providers' reports fetched and kept, the ledger's
refunds, the declines and the seller-liable completions read from PostgreSQL, the pure
matching (services/decisions/settlement/reconciliation.py), then the day's breaks, figures,
tickets and the entries of chargebacks and reversed refunds written in one transaction.

Running a day again gives the same breaks: the day's report lines and breaks are replaced by
the same ones, a ticket is opened once per break key, an entry is booked once per id.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from services.decisions.refunds.order_model import Liable
from services.decisions.settlement.reconciliation import (
    CHARGEBACK,
    REFUNDED_REVERSED,
    ChargedTo,
    FeeTerms,
    LedgerRefund,
    Reconciliation,
    ReportLine,
    SellerLiableReturn,
    reconcile,
    report_line_entry,
)
from services.eventing.log_setup import get_logger
from services.settlement.cycle_calendar import CycleCalendar
from services.settlement.ledger_store import LedgerStore
from services.settlement.psp_reports import (
    RejectedRow,
    ReportUnavailable,
    fetch_report,
    parse_report,
)

LOOKBACK_DAYS = 60  # how far back a day's reconciliation looks for open items
RECON_LOCK = "boomerang-reconciliation"
log = get_logger(__name__)


@dataclass(frozen=True)
class ReconSettings:
    fees: FeeTerms = field(default_factory=FeeTerms)
    timing_days: int = 2  # a refund not reported after this many days is missing
    lookback_days: int = LOOKBACK_DAYS

    @classmethod
    def from_env(cls) -> ReconSettings:
        """BOOMERANG_PSP_REFUND_FEE_BPS (JSON: provider or `*` → basis points),
        BOOMERANG_RECON_TIMING_DAYS, BOOMERANG_RECON_LOOKBACK_DAYS."""
        raw = os.environ.get("BOOMERANG_PSP_REFUND_FEE_BPS")
        fees = FeeTerms({str(k): int(v) for k, v in json.loads(raw).items()}) if raw else FeeTerms()
        return cls(
            fees,
            int(os.environ.get("BOOMERANG_RECON_TIMING_DAYS") or 2),
            int(os.environ.get("BOOMERANG_RECON_LOOKBACK_DAYS") or LOOKBACK_DAYS),
        )


@dataclass
class DayReconciled:
    result: Reconciliation
    lines_read: dict[str, int]
    rejected_rows: list[RejectedRow]
    unavailable: dict[str, str]
    tickets_opened: list[int]
    entries_booked: int

    def to_json(self) -> dict[str, Any]:
        r = self.result
        return {
            "date": r.as_of.isoformat(),
            "matched": r.matched,
            "compared": r.compared,
            "match_rate": round(r.match_rate, 4),
            "breaks_by_category": r.by_category(),
            "breaks": [
                {
                    "key": b.key,
                    "category": b.category.value,
                    "provider": b.provider,
                    "reference": b.reference,
                    "return_id": b.return_id,
                    "age_days": b.age_days,
                    "detail": b.detail,
                }
                for b in r.breaks
            ],
            "report_lines": self.lines_read,
            "rejected_rows": [row.to_json() for row in self.rejected_rows],
            "reports_unavailable": self.unavailable,
            "tickets_opened": self.tickets_opened,
            "entries_booked": self.entries_booked,
        }


async def reconcile_day(
    conn: AsyncConnection,
    http: httpx.AsyncClient,
    providers: Mapping[str, str],
    day: date,
    settings: ReconSettings,
    calendar: CycleCalendar | None = None,
) -> DayReconciled:
    """Fetch the providers' reports of `day`, then match and record (one transaction, under
    a lock: two runs of the same day never interleave)."""
    texts: dict[str, str] = {}
    unavailable: dict[str, str] = {}
    for provider, url in sorted(providers.items()):
        try:
            texts[provider] = await fetch_report(http, url, day)
        except ReportUnavailable as exc:
            unavailable[provider] = str(exc)
            log.warning("settlement report unavailable", provider=provider, day=str(day))
    rejected: list[RejectedRow] = []
    lines_read: dict[str, int] = {}
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (RECON_LOCK,))
        for provider, text in texts.items():
            lines, bad = parse_report(provider, text, day)
            rejected += bad
            lines_read[provider] = len(lines)
            await _keep_report(conn, provider, day, lines)
        since = day - timedelta(days=settings.lookback_days)
        all_lines = await _report_lines(conn, since, day)
        refunds = await _ledger_refunds(conn, since, day)
        result = reconcile(
            day,
            refunds,
            all_lines,
            await _declines(conn, since),
            await _seller_returns(conn, since),
            settings.fees,
            settings.timing_days,
        )
        booked = await _book_report_entries(conn, all_lines, calendar)
        tickets = await _record(conn, result, lines_read, rejected, unavailable)
    return DayReconciled(result, lines_read, rejected, unavailable, tickets, booked)


async def _keep_report(
    conn: AsyncConnection, provider: str, day: date, lines: list[ReportLine]
) -> None:
    await conn.execute(
        "DELETE FROM psp_report_lines WHERE provider = %s AND report_date = %s", (provider, day)
    )
    async with conn.cursor() as cursor:
        await cursor.executemany(
            "INSERT INTO psp_report_lines (provider, report_date, line_no, provider_reference,"
            " merchant_reference, type, gross_minor, fee_minor, net_minor, currency,"
            " booking_date, batch) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    provider,
                    day,
                    line.line_no,
                    line.provider_reference,
                    line.merchant_reference,
                    line.type,
                    line.gross_minor,
                    line.fee_minor,
                    line.net_minor,
                    line.currency,
                    line.booking_date,
                    line.batch,
                )
                for line in lines
            ],
        )


async def _report_lines(conn: AsyncConnection, since: date, day: date) -> list[ReportLine]:
    cursor = await conn.execute(
        "SELECT provider, provider_reference, merchant_reference, type, gross_minor, fee_minor,"
        " net_minor, currency, booking_date, batch, line_no FROM psp_report_lines"
        " WHERE report_date BETWEEN %s AND %s ORDER BY report_date, line_no",
        (since, day),
    )
    return [ReportLine(*row) for row in await cursor.fetchall()]


async def _ledger_refunds(conn: AsyncConnection, since: date, day: date) -> list[LedgerRefund]:
    cursor = await conn.execute(
        "SELECT e.return_id, e.refs->>'provider', COALESCE(e.refs->>'merchant_reference', ''),"
        " COALESCE(e.refs->>'provider_reference', ''), -p.amount_minor, p.currency,"
        " (e.booked_at AT TIME ZONE 'UTC')::date"
        " FROM journal_entries e JOIN postings p"
        " ON p.entry_id = e.entry_id AND p.booked_at = e.booked_at"
        " AND p.account LIKE 'psp\\_clearing:%%'"
        " WHERE (e.step = 'refund' OR e.step LIKE 'refund:%%')"
        " AND e.booked_at >= %s AND e.booked_at < %s"
        " AND NOT EXISTS (SELECT 1 FROM journal_entries r WHERE r.reverses = e.entry_id)",
        (_start_of(since), _start_of(day + timedelta(days=1))),
    )
    return [LedgerRefund(*row) for row in await cursor.fetchall()]


async def _declines(conn: AsyncConnection, since: date) -> list[tuple[str, str]]:
    cursor = await conn.execute(
        "SELECT provider, merchant_reference FROM refund_declines WHERE declined_at >= %s",
        (_start_of(since),),
    )
    return [(provider, ref) for provider, ref in await cursor.fetchall()]


async def _seller_returns(conn: AsyncConnection, since: date) -> list[SellerLiableReturn]:
    cursor = await conn.execute(
        "SELECT c.return_id, (c.completed_at AT TIME ZONE 'UTC')::date,"
        " EXISTS (SELECT 1 FROM journal_entries e"
        "         WHERE e.return_id = c.return_id AND e.step = 'liability')"
        " FROM completions_seen c"
        " WHERE c.liable = %s AND c.refunded > 0 AND c.completed_at >= %s",
        (Liable.SELLER.value, _start_of(since)),
    )
    return [SellerLiableReturn(*row) for row in await cursor.fetchall()]


async def _book_report_entries(
    conn: AsyncConnection, lines: list[ReportLine], calendar: CycleCalendar | None
) -> int:
    """Chargebacks and reversed refunds booked (once per line), against the seller when
    the return's seller is liable and settles in the line's currency."""
    money_back = [line for line in lines if line.type in (CHARGEBACK, REFUNDED_REVERSED)]
    if not money_back:
        return 0
    entries = []
    for line in money_back:
        charged_to = await _charged_to(conn, line)
        at_ms = int(datetime.combine(line.booking_date, datetime.min.time(), UTC).timestamp())
        entry = report_line_entry(line, charged_to, at_ms * 1000)
        if entry is not None:
            entries.append(entry)
    booking = await LedgerStore(conn, "reconciliation").book(entries, {}, calendar)
    return len(booking.booked)


async def _charged_to(conn: AsyncConnection, line: ReportLine) -> ChargedTo:
    """The return the line's refund was for (however long ago it was booked), its liable
    party, and the seller's account, market and order when the seller was charged."""
    cursor = await conn.execute(
        "SELECT return_id FROM journal_entries WHERE (step = 'refund' OR step LIKE 'refund:%%')"
        " AND refs->>'provider' = %s AND refs->>'merchant_reference' = %s LIMIT 1",
        (line.provider, line.merchant_reference),
    )
    found = await cursor.fetchone()
    if found is None:
        return ChargedTo()
    return_id = found[0]
    cursor = await conn.execute(
        "SELECT liable FROM completions_seen WHERE return_id = %s", (return_id,)
    )
    row = await cursor.fetchone()
    liable = Liable(row[0]) if row and row[0] in Liable.__members__ else None
    cursor = await conn.execute(
        "SELECT p.account, e.refs->>'market', e.refs->>'order_id' FROM journal_entries e"
        " JOIN postings p ON p.entry_id = e.entry_id AND p.booked_at = e.booked_at"
        " WHERE e.return_id = %s AND e.step = 'liability' AND p.currency = %s"
        " AND p.account LIKE 'seller\\_payable:%%' LIMIT 1",
        (return_id, line.currency),
    )
    seller = await cursor.fetchone()
    if seller is None:
        return ChargedTo(return_id, liable)
    return ChargedTo(return_id, liable, seller[0], seller[1] or "", seller[2] or "")


async def _record(
    conn: AsyncConnection,
    result: Reconciliation,
    lines_read: dict[str, int],
    rejected: list[RejectedRow],
    unavailable: dict[str, str],
) -> list[int]:
    """The day's figures and breaks (replacing an earlier run's), and a ticket for every
    break that needs one and has none: the tickets opened now."""
    reports = {
        "lines": lines_read,
        "rejected_rows": [row.to_json() for row in rejected],
        "unavailable": unavailable,
    }
    await conn.execute(
        "INSERT INTO recon_runs (run_date, matched, compared, match_rate, by_category, reports)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (run_date) DO UPDATE SET"
        " matched = EXCLUDED.matched, compared = EXCLUDED.compared,"
        " match_rate = EXCLUDED.match_rate, by_category = EXCLUDED.by_category,"
        " reports = EXCLUDED.reports",
        (
            result.as_of,
            result.matched,
            result.compared,
            result.match_rate,
            Jsonb(result.by_category()),
            Jsonb(reports),
        ),
    )
    await conn.execute("DELETE FROM recon_breaks WHERE run_date = %s", (result.as_of,))
    opened: list[int] = []
    async with conn.cursor() as cursor:
        for found in result.breaks:
            await cursor.execute(
                "INSERT INTO recon_breaks (run_date, break_key, category, provider, reference,"
                " return_id, age_days, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    result.as_of,
                    found.key,
                    found.category.value,
                    found.provider,
                    found.reference,
                    found.return_id,
                    found.age_days,
                    found.detail,
                ),
            )
            if not found.needs_ticket:
                continue
            await cursor.execute(
                "INSERT INTO recon_tickets (break_key, category, return_id, detail, opened_on)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (break_key) DO NOTHING"
                " RETURNING ticket_id",
                (found.key, found.category.value, found.return_id, found.detail, result.as_of),
            )
            ticket = await cursor.fetchone()
            if ticket is not None:
                opened.append(ticket[0])
    return opened


async def break_history(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every break ever seen: first and last day, resolved when a later run lost it."""
    cursor = await conn.execute(
        "SELECT break_key, category, provider, reference, return_id, first_seen, last_seen,"
        " resolved_on, ticket_id FROM recon_break_history ORDER BY break_key"
    )
    names = [column.name for column in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]


def _start_of(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC)
