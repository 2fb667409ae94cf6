"""Finance's commands: `boomerang recon run --date D` (reconcile a day with the providers'
reports), `boomerang recon breaks` (every break's history) and `boomerang finance sql "…"`
(a read-only query as the `boomerang_finance` role). Each connects to DATABASE_URL (in a
checkout, its local PostgreSQL) and applies the ledger's migrations first.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import httpx
import psycopg
from psycopg import AsyncConnection

FINANCE_ROLE = "boomerang_finance"


def _day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date:
    if value is None:
        return datetime.now(UTC).date() - timedelta(days=1)
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


async def _connect() -> AsyncConnection:
    from services.settlement.app import database_url
    from services.settlement.schema_migrations import apply_migrations

    conn = await AsyncConnection.connect(database_url(), autocommit=True)
    await apply_migrations(conn)
    return conn


@click.group()
def recon() -> None:
    """Reconciliation of the ledger with the payment providers' settlement reports."""


@recon.command("run")
@click.option("--date", "day", callback=_day, help="The day (YYYY-MM-DD; default yesterday, UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the breaks to this CSV file.",
)
def recon_run(day: date, as_json: bool, csv_path: Path | None) -> None:
    """Fetch the providers' reports of a day and match them three ways with the ledger's
    refunds and the sellers' debits; every break by category, with its age. Running a day
    again changes nothing. Exit 1 when a break needs a person (a ticket)."""
    from services.settlement.cycle_calendar import CycleCalendar
    from services.settlement.psp_reports import providers_from_env
    from services.settlement.reconciliation_store import ReconSettings, reconcile_day

    providers = providers_from_env()
    if not providers:
        raise click.ClickException("no providers: set PSP_PROVIDERS (name → base URL)")

    async def run() -> dict[str, Any]:
        async with await _connect() as conn, httpx.AsyncClient(timeout=30.0) as http:
            click.echo(f"reconciling {day} with {', '.join(sorted(providers))} ...", err=True)
            done = await reconcile_day(
                conn, http, providers, day, ReconSettings.from_env(), CycleCalendar.from_env()
            )
            return done.to_json()

    try:
        result = asyncio.run(run())
    except psycopg.Error as exc:
        raise click.ClickException(f"the ledger database: {exc}") from exc
    if csv_path is not None:
        _write_breaks_csv(csv_path, result["breaks"])
    if as_json:
        click.echo(json.dumps(result))
    else:
        _print_day(result)
    if any(b["category"] != "timing" for b in result["breaks"]):
        sys.exit(1)


def _write_breaks_csv(path: Path, breaks: list[dict[str, Any]]) -> None:
    columns = ["key", "category", "provider", "reference", "return_id", "age_days", "detail"]
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(breaks)


def _print_day(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    lines = ", ".join(f"{p} {n}" for p, n in result["report_lines"].items()) or "none"
    console.print(
        f"{result['date']}: {result['matched']} of {result['compared']} matched "
        f"(match rate {result['match_rate']:.2%}); report lines read: {lines}"
    )
    for provider, reason in result["reports_unavailable"].items():
        console.print(f"  [red]{provider}: report unavailable[/red] ({reason})")
    for row in result["rejected_rows"]:
        console.print(f"  {row['provider']} row {row['row']} rejected: {row['reason']}")
    table = Table(title=f"breaks as of {result['date']}")
    for column in ("category", "provider", "reference", "return", "age (days)", "detail"):
        table.add_column(column)
    for b in result["breaks"]:
        table.add_row(
            b["category"],
            b["provider"],
            b["reference"],
            b["return_id"],
            str(b["age_days"]),
            b["detail"],
        )
    console.print(table)
    console.print(
        f"by category: {result['breaks_by_category'] or 'none'}; "
        f"tickets opened: {len(result['tickets_opened'])}; "
        f"chargeback/reversal entries booked: {result['entries_booked']}"
    )


@recon.command("breaks")
@click.option("--json", "as_json", is_flag=True)
def recon_breaks(as_json: bool) -> None:
    """Every break seen: its first and last day, when it resolved, its ticket."""
    from services.settlement.reconciliation_store import break_history

    async def run() -> list[dict[str, Any]]:
        async with await _connect() as conn:
            return await break_history(conn)

    rows = asyncio.run(run())
    if as_json:
        click.echo(json.dumps(rows, default=str))
        return
    for row in rows:
        resolved = f"resolved {row['resolved_on']}" if row["resolved_on"] else "open"
        ticket = f" ticket {row['ticket_id']}" if row["ticket_id"] else ""
        click.echo(
            f"{row['category']:<22} {row['reference']:<40} {row['first_seen']}..{row['last_seen']}"
            f" {resolved}{ticket}"
        )


@click.group()
def finance() -> None:
    """Finance's access to the ledger (docs/settlement.md lists the views)."""


@finance.command("sql")
@click.argument("query")
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of aligned columns.")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=10_000, show_default=True)
def finance_sql(query: str, as_csv: bool, limit: int) -> None:
    """Run QUERY read-only, as the `boomerang_finance` role (SELECT on the ledger, the
    statements and reconciliation; nothing can be changed), 60 s at most."""

    statement = query.strip().rstrip(";").strip()
    if ";" in statement:
        raise click.ClickException("one statement at a time (no ';' inside the query)")

    async def run() -> tuple[list[str], list[tuple[Any, ...]]]:
        async with await _connect() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION READ ONLY")
            await conn.execute(f"SET LOCAL ROLE {FINANCE_ROLE}")
            await conn.execute("SET LOCAL statement_timeout = '60s'")
            cursor = await conn.execute(statement)  # type: ignore[arg-type]
            names = [column.name for column in cursor.description or ()]
            return names, await cursor.fetchmany(limit)

    try:
        names, rows = asyncio.run(run())
    except psycopg.Error as exc:
        raise click.ClickException(str(exc).strip()) from exc
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        writer.writerows(rows)
        return
    widths = [max([len(n), *(len(str(r[i])) for r in rows)]) for i, n in enumerate(names)]
    click.echo("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)))
    for row in rows:
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
    click.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", err=True)
