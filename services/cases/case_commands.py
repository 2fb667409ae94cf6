"""`boomerang cases list / show / assign / close`: support cases from a terminal, through
the cases service's HTTP API (a thin httpx adapter). The agent is whoever the token
belongs to (`--token`, or $BOOMERANG_AGENT_TOKEN: a support agent's marketplace token)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click
import httpx

DEFAULT_URL = "http://127.0.0.1:8097"
TOKEN_VARIABLE = "BOOMERANG_AGENT_TOKEN"
URL_VARIABLE = "BOOMERANG_CASES_URL"


class Agent:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if not self.token:
            raise click.UsageError(
                f"a support agent's token is needed: --token or ${TOKEN_VARIABLE}"
            )
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            answer = httpx.request(
                method, f"{self.url}{path}", headers=headers, timeout=15, **kwargs
            )
        except httpx.HTTPError as exc:
            raise click.ClickException(
                f"the cases service at {self.url} did not answer: {exc}"
            ) from exc
        try:
            body = answer.json() if answer.content else {}
        except ValueError:
            body = {"detail": answer.text[:300]}
        if answer.status_code >= 400:
            raise click.ClickException(
                f"{answer.status_code} {body.get('error', '')}: {body.get('detail', '')}"
            )
        return body


pass_agent = click.make_pass_decorator(Agent)


def agent_group(command: Callable[[], None]) -> click.Group:
    @click.option("--url", envvar=URL_VARIABLE, default=DEFAULT_URL, show_default=True)
    @click.option(
        "--token", envvar=TOKEN_VARIABLE, help=f"a support agent's token (${TOKEN_VARIABLE})"
    )
    @click.pass_context
    @functools.wraps(command)
    def connect(ctx: click.Context, url: str, token: str | None) -> None:
        ctx.obj = Agent(url, token)

    return click.group()(connect)


@agent_group
def cases() -> None:
    """Support cases: list, show, assign, close."""


def _when(at_ms: int | None) -> str:
    if not at_ms:
        return "-"
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


@cases.command("list")
@click.option(
    "--status",
    type=click.Choice(["open", "overdue", "closed", "all"]),
    default="open",
    show_default=True,
)
@click.option("--type", "case_type", help="only this type")
@click.option("--market", help="only this market")
@click.option("--assignee", help="only this agent's")
@click.option("--json", "as_json", is_flag=True)
@pass_agent
def list_cases(
    agent: Agent,
    status: str,
    case_type: str | None,
    market: str | None,
    assignee: str | None,
    as_json: bool,
) -> None:
    """The cases, soonest due first."""
    params = {"status": status, "type": case_type, "market": market, "assignee": assignee}
    found = agent.call("GET", "/cases", params={k: v for k, v in params.items() if v})
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for case in found["cases"]:
        late = f"OVERDUE L{case['level']}" if case["overdue"] else f"L{case['level']}"
        click.echo(
            f"{case['case_id']:<40} {case['type']:<11} {case['market'] or '-':<3} "
            f"{case['status']:<6} due {_when(case['due_at'])} {late:<11} "
            f"{case['assignee'] or '-':<12} {case['summary'][:60]}"
        )
    click.echo(f"{len(found['cases'])} shown of {found['count']} ({status})")


@cases.command("show")
@click.argument("case_id")
@click.option("--json", "as_json", is_flag=True)
@pass_agent
def show_case(agent: Agent, case_id: str, as_json: bool) -> None:
    """One case: its facts and history."""
    case = agent.call("GET", f"/cases/{case_id}")
    if as_json:
        click.echo(json.dumps(case, indent=2))
        return
    click.echo(
        f"case       {case['case_id']}  "
        f"({case['type']}, {case['category']}, {case['market'] or '-'})"
    )
    click.echo(f"return     {case['return_id']}")
    click.echo(f"status     {case['status']} {case.get('outcome', '')}".rstrip())
    click.echo(
        f"due        {_when(case['due_at'])}  level {case['level']}  "
        f"{'OVERDUE' if case['overdue'] else ''}"
    )
    click.echo(f"assignee   {case['assignee'] or '-'}")
    click.echo(f"summary    {case['summary']}")
    for name, value in sorted(case["facts"].items()):
        click.echo(f"  fact     {name} = {value}")
    for entry in case["history"]:
        click.echo(f"  {_when(entry['at'])}  {entry['what']} ({entry['by']})")


@cases.command("assign")
@click.argument("case_id")
@click.argument("assignee")
@pass_agent
def assign(agent: Agent, case_id: str, assignee: str) -> None:
    """Give CASE_ID to ASSIGNEE."""
    agent.call("POST", f"/cases/{case_id}/assign", json={"assignee": assignee})
    click.echo(f"{case_id}: assigned to {assignee}")


@cases.command("close")
@click.argument("case_id")
@click.option("--outcome", required=True, help="one of the outcomes of the case's type")
@click.option("--note", default="", help="why (kept in the case's history)")
@pass_agent
def close(agent: Agent, case_id: str, outcome: str, note: str) -> None:
    """Close CASE_ID with an outcome."""
    agent.call("POST", f"/cases/{case_id}/close", json={"outcome": outcome, "note": note})
    click.echo(f"{case_id}: closed ({outcome})")
