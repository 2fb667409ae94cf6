"""`boomerang sellers show S`: a seller's standing per market, the rules that put it there,
and its current rates per category beside its peers' medians (the risk service's
GET /governance/sellers/{seller_id}, a thin httpx adapter)."""

from __future__ import annotations

import json

import click

from services.risk.review_commands import Reviewer, reviewer_group


@reviewer_group
def sellers() -> None:
    """Seller governance: standings (good, watch, probation) and the figures behind them."""


@sellers.command("show")
@click.argument("seller_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def show(reviewer: Reviewer, seller_id: str, as_json: bool) -> None:
    """The seller's standings, why, and its rates against its peers."""
    found = reviewer.call("GET", f"/governance/sellers/{seller_id}")
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    click.echo(f"seller {seller_id}")
    if not found["standings"]:
        click.echo("  standing   good everywhere (never flagged)")
    for record in found["standings"]:
        click.echo(
            f"  {record['market']:<4} {record['standing']:<10} (was {record['previous']}, "
            f"day {record['day']}, calm {record['calm_days']} days)"
        )
        for reason in record["reasons"]:
            click.echo(f"       fired  {reason}")
    for figure in found["figures"]:
        rates = ", ".join(
            f"{name} {rate:.1%} (peers {figure['peer_medians'].get(name, 0):.1%})"
            for name, rate in sorted(figure["rates"].items())
        )
        click.echo(
            f"  {figure['market']:<4} {figure['category']:<14} {figure['returns_90d']:>4} returns "
            f"in 90 days, {figure['peers']} peers: {rates}"
        )
