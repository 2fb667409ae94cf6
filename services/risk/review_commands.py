"""`boomerang review list / show / approve / deny`: the reviewers' queue from a terminal,
through the risk service's HTTP API (a thin httpx adapter).

The reviewer is whoever the token belongs to (`--token`, or $BOOMERANG_REVIEWER_TOKEN); the
service records each verdict on the operations audit trail and sends it to the saga. The
same verdict again changes nothing; a different one on a decided case is refused.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click
import httpx

DEFAULT_URL = "http://127.0.0.1:8089"
TOKEN_VARIABLE = "BOOMERANG_REVIEWER_TOKEN"
URL_VARIABLE = "BOOMERANG_RISK_URL"


class Reviewer:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if not self.token:
            raise click.UsageError(f"a reviewer token is needed: --token or ${TOKEN_VARIABLE}")
        self.headers = {"Authorization": f"Bearer {self.token}"}
        try:
            answer = httpx.request(
                method, f"{self.url}{path}", headers=self.headers, timeout=15, **kwargs
            )
        except httpx.HTTPError as exc:
            raise click.ClickException(
                f"the risk service at {self.url} did not answer: {exc}"
            ) from exc
        body = answer.json() if answer.content else {}
        if answer.status_code >= 400:
            raise click.ClickException(
                f"{answer.status_code} {body.get('error', '')}: {body.get('detail', answer.text)}"
            )
        return body


pass_reviewer = click.make_pass_decorator(Reviewer)


def reviewer_group(command: Callable[[], None]) -> click.Group:
    """A command group whose commands call the risk service as a reviewer (`--url`,
    `--token`)."""

    @click.option("--url", envvar=URL_VARIABLE, default=DEFAULT_URL, show_default=True)
    @click.option("--token", envvar=TOKEN_VARIABLE, help=f"a reviewer's token (${TOKEN_VARIABLE})")
    @click.pass_context
    @functools.wraps(command)
    def connect(ctx: click.Context, url: str, token: str | None) -> None:
        ctx.obj = Reviewer(url, token)

    return click.group()(connect)


@reviewer_group
def review() -> None:
    """Review held and queued returns: list, show, approve, deny."""


@review.command("list")
@click.option(
    "--status",
    type=click.Choice(["waiting", "open", "escalated", "approved", "denied", "all"]),
    default="waiting",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True)
@pass_reviewer
def list_cases(reviewer: Reviewer, status: str, as_json: bool) -> None:
    """The queue: held returns first, oldest first."""
    found = reviewer.call("GET", "/reviews", params={"status": status})
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for case in found["cases"]:
        rules = ", ".join(rule["rule_id"] for rule in case["rules"])
        click.echo(
            f"{case['return_id']:<28} {case['status']:<10} {case['outcome']:<7} "
            f"score {case['score']:>3}  {_when(case['decided_at'])}  {rules}"
        )
    click.echo(f"{len(found['cases'])} shown of {found['total']} ({status})")


@review.command("show")
@click.argument("return_id")
@click.option("--json", "as_json", is_flag=True)
@pass_reviewer
def show_case(reviewer: Reviewer, return_id: str, as_json: bool) -> None:
    """One return's decision: the rules that fired and what they read, the shadow set's
    decision, the verdict."""
    case = reviewer.call("GET", f"/reviews/{return_id}")
    if as_json:
        click.echo(json.dumps(case, indent=2))
        return
    click.echo(
        f"return     {case['return_id']}  (buyer {case['buyer_id']}, seller {case['seller_id']})"
    )
    click.echo(
        f"decision   {case['outcome']} score {case['score']} by {case['rule_set']} "
        f"v{case['rule_set_version']} at {_when(case['decided_at'])}"
    )
    click.echo(f"case       {case['case_id'] or '-'}  {case['status']}")
    for rule in case["rules"]:
        inputs = ", ".join(f"{name}={value}" for name, value in rule["inputs"].items())
        click.echo(f"  fired    {rule['rule_id']:<20} +{rule['score']:<4} {inputs}")
    if case["missing"]:
        click.echo(f"  missing  {', '.join(case['missing'])}")
    if case["shadow"]:
        shadow = case["shadow"]
        click.echo(
            f"shadow     v{shadow['shadow_version']}: {shadow['shadow']} "
            f"(only shadow: {', '.join(shadow['only_shadow']) or '-'}; "
            f"only live: {', '.join(shadow['only_live']) or '-'})"
        )
    if case["verdict"]:
        verdict = case["verdict"]
        click.echo(
            f"verdict    {verdict['verdict']} by {verdict['reviewer']} at "
            f"{_when(verdict['decided_at'])}: {verdict['reason']}"
        )


def _verdict(reviewer: Reviewer, return_id: str, verdict: str, reason: str) -> None:
    taken = reviewer.call(
        "POST", f"/reviews/{return_id}/verdict", json={"verdict": verdict, "reason": reason}
    )
    again = " (given before: nothing changed)" if taken["repeated"] else ""
    click.echo(f"{return_id}: {verdict} recorded for case {taken['case_id']}{again}")


@review.command("approve")
@click.argument("return_id")
@click.option("--reason", required=True, help="why (kept with the verdict and audited)")
@pass_reviewer
def approve(reviewer: Reviewer, return_id: str, reason: str) -> None:
    """Let a held return's refund go on (a reviewed one: confirm it)."""
    _verdict(reviewer, return_id, "approve", reason)


@review.command("deny")
@click.argument("return_id")
@click.option("--reason", required=True, help="why (the buyer-facing reason; audited)")
@pass_reviewer
def deny(reviewer: Reviewer, return_id: str, reason: str) -> None:
    """Reject a held return with the reason (a ticket is opened)."""
    _verdict(reviewer, return_id, "deny", reason)


def _when(at_ms: int | None) -> str:
    if not at_ms:
        return "-"
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
