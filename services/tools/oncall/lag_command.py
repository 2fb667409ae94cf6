"""`boomerang lag`: consumer lag per service, topic and partition."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from services.eventing.settings import bootstrap_servers
from services.tools.oncall.cli_output import emit, report_console, table


@click.command()
@click.option("--service", help="Only this service's consumer group.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def lag(service: str | None, as_json: bool) -> None:
    """Consumer lag per service, topic and partition, and the oldest unprocessed record's age."""
    from services.eventing.envelope import now_ms
    from services.tools.oncall.consumer_lag import measure, topics_by_service

    if service is not None and service not in topics_by_service():
        raise click.BadParameter(
            f"{service!r} consumes nothing (one of: {', '.join(topics_by_service())})",
            param_hint="--service",
        )
    report = asyncio.run(measure(bootstrap_servers(), now_ms(), service))

    def render(report: dict[str, Any]) -> None:
        """The lag per group, then the partitions that are behind."""
        console = report_console(as_json)
        rows = [
            [
                g["service"],
                g["state"],
                g["members"],
                g["lag"],
                _age(g["oldest_unprocessed_age_s"]),
            ]
            for g in report["groups"]
        ]
        console.print(
            table(
                f"consumer lag: {report['total_lag']} record(s) behind",
                ["service", "group state", "members", "lag", "oldest unprocessed"],
                rows,
            )
        )
        behind = [
            [g["service"], p["topic"], p["partition"], p["committed"], p["end"], p["lag"]]
            for g in report["groups"]
            for p in g["partitions"]
            if p["lag"]
        ]
        if behind:
            console.print(
                table(
                    "partitions behind",
                    ["service", "topic", "partition", "committed", "end", "lag"],
                    behind,
                )
            )

    emit(report, as_json, render)


def _age(seconds: float | None) -> str:
    """An age for people: `12.5 s`, or `-` when there is none."""
    return "-" if seconds is None else f"{seconds} s"
