"""What the settlement service does on its own, on a clock (an adapter):

- every few seconds, a round of carrier claims (claims_desk);
- every minute, every market's cycle that has ended (plus a grace period for late
  bookings in flight) closed, its statements written; closing is idempotent and takes the
  market's lock, so several settlement processes never close a cycle twice;
- every ten minutes, each of the last seven days reconciled with the providers' reports
  once its reports are due (`BOOMERANG_RECON_HOUR_UTC`) unless a complete run of that day
  exists (a run that could not fetch a provider's report is run again);
- every hour, retention: rows older than their policy deleted (`BOOMERANG_SETTLEMENT_
  RETENTION_DAYS`, JSON per table) and ledger months older than the statutory years
  (`BOOMERANG_LEDGER_RETENTION_YEARS`, 10) dropped whole.

Each job runs under a try-lock of its own: with several processes, one does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from psycopg import AsyncConnection

from services.decisions.settlement.cycles import cycle
from services.eventing.envelope import now_ms
from services.eventing.log_setup import get_logger
from services.settlement import settlement_metrics
from services.settlement.claims_desk import work_claims
from services.settlement.cycle_calendar import CycleCalendar
from services.settlement.ledger_store import LedgerStore
from services.settlement.psp_reports import providers_from_env
from services.settlement.reconciliation_store import ReconSettings, reconcile_day
from services.settlement.statements_store import close_cycle

log = get_logger(__name__)
RECON_CATCH_UP_DAYS = 7  # days the schedule looks back for a missing or incomplete run

# days each table keeps its rows (the ledger itself: whole months, statutory years)
RETENTION_DAYS = {
    "orders": 400,  # as long as the orders topic: a return can come within a year
    "settlement_rejects": 180,
    "completions_seen": 400,
    "refund_declines": 400,
    "psp_report_lines": 400,
    "recon_runs": 400,
    "pending_completions": 400,
}
RETENTION_COLUMNS = {
    "orders": "placed_at",
    "settlement_rejects": "rejected_at",
    "completions_seen": "completed_at",
    "refund_declines": "declined_at",
    "psp_report_lines": "report_date",
    "recon_runs": "run_date",
    "pending_completions": "waiting_since",
}


@dataclass(frozen=True)
class ScheduleSettings:
    carrier_url: str | None
    claims_every_s: float = 2.0
    close_every_s: float = 60.0
    close_grace_s: float = 3600.0  # bookings in flight when a cycle ends
    recon_every_s: float = 600.0
    recon_hour_utc: int = 6
    retention_every_s: float = 3600.0
    retention_days: dict[str, int] = field(default_factory=lambda: dict(RETENTION_DAYS))
    ledger_years: int = 10

    @classmethod
    def from_env(cls) -> ScheduleSettings:
        days = dict(RETENTION_DAYS)
        raw = os.environ.get("BOOMERANG_SETTLEMENT_RETENTION_DAYS")
        if raw:
            wanted = json.loads(raw)
            unknown = set(wanted) - set(RETENTION_DAYS)
            if unknown:
                raise ValueError(f"BOOMERANG_SETTLEMENT_RETENTION_DAYS: unknown {sorted(unknown)}")
            days |= {table: int(kept) for table, kept in wanted.items()}
        return cls(
            carrier_url=os.environ.get("CARRIER_URL") or None,
            claims_every_s=float(os.environ.get("BOOMERANG_CLAIMS_EVERY_S") or 2.0),
            close_grace_s=float(os.environ.get("BOOMERANG_CYCLE_CLOSE_GRACE_S") or 3600),
            recon_hour_utc=int(os.environ.get("BOOMERANG_RECON_HOUR_UTC") or 6),
            retention_days=days,
            ledger_years=int(os.environ.get("BOOMERANG_LEDGER_RETENTION_YEARS") or 10),
        )


class FinanceSchedule:
    def __init__(
        self, database_url: str, calendar: CycleCalendar, settings: ScheduleSettings
    ) -> None:
        self.database_url = database_url
        self.calendar = calendar
        self.settings = settings
        self.last_error = ""
        self.runs: dict[str, int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        jobs: list[tuple[str, float, Callable[[AsyncConnection], Awaitable[None]]]] = [
            ("close", self.settings.close_every_s, self.close_ended_cycles),
            ("recon", self.settings.recon_every_s, self.reconcile_yesterday),
            ("retention", self.settings.retention_every_s, self.retention),
            ("figures", settlement_metrics.FIGURES_EVERY_S, self.read_figures),
        ]
        if self.settings.carrier_url:
            jobs.insert(0, ("claims", self.settings.claims_every_s, self.claims))
        due = {name: 0.0 for name, _, _ in jobs}
        while not stop.is_set():
            for name, every_s, job in jobs:
                if time.monotonic() < due[name]:
                    continue
                due[name] = time.monotonic() + every_s
                await self._once(name, job)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def _once(self, name: str, job: Callable[[AsyncConnection], Awaitable[None]]) -> None:
        try:
            async with await AsyncConnection.connect(self.database_url, autocommit=True) as conn:
                locked = await (
                    await conn.execute(
                        "SELECT pg_try_advisory_lock(hashtext(%s))", (f"boomerang-job-{name}",)
                    )
                ).fetchone()
                if not (locked and locked[0]):
                    return  # another settlement process is doing it
                await job(conn)
                self.runs[name] = self.runs.get(name, 0) + 1
        except (psycopg.Error, httpx.HTTPError, OSError, ValueError) as exc:
            self.last_error = f"{name}: {exc!r}"
            log.warning("scheduled job failed; it runs again", job=name, error=repr(exc))
        except Exception as exc:  # a bug: logged with its trace, the other jobs go on
            self.last_error = f"{name}: {exc!r}"
            log.exception("scheduled job failed unexpectedly; it runs again", job=name)

    async def read_figures(self, conn: AsyncConnection) -> None:
        """The last reconciliation run's figures, for /metrics (settlement_metrics.py)."""
        run = await (
            await conn.execute(
                "SELECT run_date, match_rate, by_category FROM recon_runs"
                " ORDER BY run_date DESC LIMIT 1"
            )
        ).fetchone()
        tickets = await (await conn.execute("SELECT count(*) FROM recon_tickets")).fetchone()
        settlement_metrics.RECON.figures = settlement_metrics.ReconFigures(
            run_date=str(run[0]) if run else "",
            match_rate=float(run[1]) if run else None,
            breaks_by_category={str(k): int(v) for k, v in (run[2] if run else {}).items()},
            open_tickets=int(tickets[0]) if tickets else 0,
        )

    async def claims(self, conn: AsyncConnection) -> None:
        assert self.settings.carrier_url is not None
        async with httpx.AsyncClient(timeout=10.0) as http:
            await work_claims(conn, http, self.settings.carrier_url.rstrip("/"))

    async def close_ended_cycles(self, conn: AsyncConnection) -> None:
        """Every market's open cycle with entries that ended more than the grace ago."""
        cursor = await conn.execute(
            "SELECT DISTINCT market, cycle_number FROM journal_entries j"
            " WHERE market IS NOT NULL AND cycle_number IS NOT NULL AND NOT EXISTS"
            " (SELECT 1 FROM settlement_cycles c WHERE c.market = j.market"
            " AND c.number = j.cycle_number AND c.closed_at IS NOT NULL)"
        )
        now = now_ms()
        for market, number in sorted(await cursor.fetchall()):
            rule, zone = self.calendar.rule_and_zone(market)
            if cycle(rule, zone, number).end_ms + self.settings.close_grace_s * 1000 > now:
                continue
            statements = await close_cycle(conn, self.calendar, market, number, now)
            log.info(
                "cycle closed on schedule", market=market, number=number, statements=len(statements)
            )

    async def reconcile_yesterday(self, conn: AsyncConnection) -> None:
        """Every day of the last week (up to yesterday, once its reports are due) without a
        complete run: never run (no settlement process was up), or run while a provider's
        report could not be had."""
        providers = providers_from_env()
        now = datetime.now(UTC)
        yesterday = now.date() - timedelta(days=1)
        last_due = (
            yesterday if now.hour >= self.settings.recon_hour_utc else yesterday - timedelta(1)
        )
        if not providers:
            return
        days = [last_due - timedelta(days=back) for back in range(RECON_CATCH_UP_DAYS)]
        cursor = await conn.execute(
            "SELECT run_date FROM recon_runs WHERE run_date = ANY(%s)"
            " AND reports->'unavailable' = '{}'::jsonb",
            (days,),
        )
        complete = {day for (day,) in await cursor.fetchall()}
        async with httpx.AsyncClient(timeout=30.0) as http:
            for day in sorted(set(days) - complete):
                done = await reconcile_day(
                    conn, http, providers, day, ReconSettings.from_env(), self.calendar
                )
                log.info("reconciled on schedule", day=str(day), **done.result.by_category())

    async def retention(self, conn: AsyncConnection) -> None:
        for table, days in self.settings.retention_days.items():
            column = RETENTION_COLUMNS[table]
            cutoff = datetime.now(UTC) - timedelta(days=days)
            await conn.execute(
                f"DELETE FROM {table} WHERE {column} < %s",  # names from RETENTION_COLUMNS
                (cutoff,),
            )
        now = datetime.now(UTC)
        store = LedgerStore(conn, "retention")
        # this month's and next month's partitions made ahead: bookings rarely create one
        next_month = (now.year + now.month // 12, now.month % 12 + 1)
        await store.ensure_months([(now.year, now.month), next_month])
        first_kept = now.year - self.settings.ledger_years
        dropped = await store.drop_months_before(first_kept, 1)
        if dropped:
            log.info("ledger months dropped", partitions=dropped)
