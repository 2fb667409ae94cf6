"""`boomerang audit`: the newest on-call operations from the audit trail."""

from __future__ import annotations

import asyncio
import json

import click

from services.eventing.settings import bootstrap_servers
from services.tools.oncall import audit_trail
from services.tools.oncall.cli_output import stdout_console, table


@click.command()
@click.option("--operation", help="Only this operation (e.g. replay.republish, dlq.redrive).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the events as JSON.")
def audit(operation: str | None, limit: int, as_json: bool) -> None:
    """The newest on-call operations from boomerang.operations.audit: who, what, when, why,
    what the dry run predicted and what happened."""
    events = asyncio.run(audit_trail.read_trail(bootstrap_servers()))
    chosen = [e for e in events if operation is None or e.get("operation") == operation]
    newest = chosen[-limit:]
    if as_json:
        click.echo(json.dumps(newest, indent=2))
        return
    rows = [
        [
            e.get("at", ""),
            e.get("operation", ""),
            e.get("actor", ""),
            e.get("outcome", ""),
            (e.get("dry_run_prediction") or {}).get("new_effects", "-"),
            e.get("reason", ""),
        ]
        for e in newest
    ]
    stdout_console().print(
        table(
            f"{len(newest)} of {len(chosen)} operation(s)",
            ["at", "operation", "who", "outcome", "new effects predicted", "why"],
            rows,
        )
    )
