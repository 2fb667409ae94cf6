"""`boomerang replay`: re-deliver a topic's records, by re-publishing them or by rewinding a
stopped consumer group (dry run first; `replay` holds the service layer)."""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from typing import TYPE_CHECKING, Any

import click

from services.eventing.settings import bootstrap_servers
from services.eventing.topics import STREAMS
from services.tools.oncall import audit_trail
from services.tools.oncall.cli_output import (
    emit,
    print_effects,
    progress_bar,
    report_console,
    table,
)
from services.tools.oncall.topic_reader import catalogue_codec
from services.tools.oncall.write_safeguards import (
    INTERRUPTED_EXIT,
    require_reason,
    stop_on_ctrl_c,
)

if TYPE_CHECKING:
    from services.tools.oncall.record_selection import Selection

STREAM_NAMES = [s.name for s in STREAMS]


def _resume_command(positions: dict[int, int], ends: dict[int, int]) -> str:
    """The same command, starting where this run stopped and ending where its selection
    ended (so the copies this run wrote are not selected again)."""
    from services.tools.oncall.record_selection import format_positions

    replaced = ("--start-at", "--stop-at")
    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg in replaced:
            skip = True
            continue
        if arg.startswith(tuple(f"{option}=" for option in replaced)):
            continue
        argv.append(arg)
    resume = ["--start-at", format_positions(positions), "--stop-at", format_positions(ends)]
    return shlex.join(["boomerang", *argv, *resume])


@click.command()
@click.option(
    "--topic", required=True, type=click.Choice(STREAM_NAMES), help="The topic to replay."
)
@click.option("--partition", "partitions", multiple=True, type=click.IntRange(min=0))
@click.option("--from-offset", type=click.IntRange(min=0), help="First offset (included).")
@click.option("--to-offset", type=click.IntRange(min=0), help="Last offset (excluded).")
@click.option("--from-time", help="ISO 8601 instant, included (e.g. 2026-11-24T09:00:00Z).")
@click.option("--to-time", help="ISO 8601 instant, excluded.")
@click.option("--return-id", "return_ids", multiple=True, help="Only this return (repeatable).")
@click.option("--event-type", "event_types", multiple=True, help="Only this type (repeatable).")
@click.option(
    "--group",
    "service",
    help="Rewind this service's consumer group instead of re-publishing (it must be stopped).",
)
@click.option("--to-topic", help="Re-publish to this topic instead of the original.")
@click.option("--start-at", help="Resume: PARTITION:OFFSET,... as an interrupted run printed.")
@click.option("--stop-at", help="Resume: where the interrupted run's selection ended.")
@click.option(
    "--include-replayed",
    is_flag=True,
    help="Also select copies an earlier replay wrote (they repeat their originals' event ids).",
)
@click.option("--rate", type=click.FloatRange(min=0.1), help="At most this many records/s.")
@click.option("--reason", help="Why (required with --execute; goes into headers and audit).")
@click.option("--execute", is_flag=True, help="Write. Without it this is a dry run.")
@click.option("--dry-run", is_flag=True, help="Only say what would happen (the default).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def replay(
    topic: str,
    partitions: tuple[int, ...],
    from_offset: int | None,
    to_offset: int | None,
    from_time: str | None,
    to_time: str | None,
    return_ids: tuple[str, ...],
    event_types: tuple[str, ...],
    service: str | None,
    to_topic: str | None,
    start_at: str | None,
    stop_at: str | None,
    include_replayed: bool,
    rate: float | None,
    reason: str | None,
    execute: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Re-deliver records of TOPIC to the consumers that need them.

    \b
    Re-publish (default): the selected records go back on the topic with their original
    key, bytes and event ids (consumers deduplicate them) and replay.* headers saying who,
    when, why and from where.
    Rewind (--group SERVICE): the stopped group's offsets move back to the selection's
    start; it reads everything from there when started again.

    The dry run (default) counts the records per partition and event type and asks each
    consumer's dedupe state what would be new. Ctrl-C stops between two records and prints
    the command that resumes.
    """
    from services.eventing.topics import by_name
    from services.tools.oncall.record_selection import (
        Selection,
        SelectionError,
        parse_instant,
        parse_positions,
    )
    from services.tools.oncall.replay_effects import consumers_of

    def record_types(name: str) -> tuple[str, ...]:
        return by_name(name).record_types

    if execute and dry_run:
        raise click.UsageError("--execute and --dry-run contradict each other")
    require_reason(execute, reason, "the headers and audit")
    unknown = sorted(set(event_types) - set(record_types(topic)))
    if unknown:
        raise click.BadParameter(
            f"{', '.join(unknown)} never travels on {topic} (it carries: "
            f"{', '.join(record_types(topic))})",
            param_hint="--event-type",
        )
    if to_topic is not None and to_topic not in STREAM_NAMES:
        raise click.BadParameter(
            f"{to_topic!r} is not a topic of the catalogue", param_hint="--to-topic"
        )
    if service is not None:
        readers = sorted({c.service for c in consumers_of(topic)})
        if service.removeprefix("boomerang-") not in readers:
            raise click.BadParameter(
                f"no service {service!r} consumes {topic} (its consumers: {', '.join(readers)})",
                param_hint="--group",
            )
        service = service.removeprefix("boomerang-")
        rewind_conflicts = {
            "--to-offset": to_offset,
            "--to-time": to_time,
            "--return-id": return_ids,
            "--event-type": event_types,
            "--to-topic": to_topic,
            "--start-at": start_at,
            "--stop-at": stop_at,
            "--include-replayed": include_replayed,
            "--rate": rate,
        }
        given = [name for name, value in rewind_conflicts.items() if value]
        if given:
            raise click.UsageError(
                f"{', '.join(given)} cannot narrow a rewind: a group re-reads everything from "
                "its new offset on. Re-publish the selected records instead (drop --group)."
            )
    try:
        selection = Selection(
            topic=topic,
            partitions=frozenset(partitions),
            from_offset=from_offset,
            to_offset=to_offset,
            from_time_ms=parse_instant(from_time, "--from-time") if from_time else None,
            to_time_ms=parse_instant(to_time, "--to-time") if to_time else None,
            return_ids=frozenset(return_ids),
            event_types=frozenset(event_types),
            start_at=parse_positions(start_at) if start_at else {},
            stop_at=parse_positions(stop_at, "--stop-at") if stop_at else {},
            include_replayed=include_replayed,
        )
    except SelectionError as exc:
        raise click.UsageError(str(exc)) from exc
    code = asyncio.run(_replay(selection, service, to_topic, rate, reason, execute, as_json))
    sys.exit(code)


async def _replay(
    selection: Selection,
    service: str | None,
    to_topic: str | None,
    rate: float | None,
    reason: str | None,
    execute: bool,
    as_json: bool,
) -> int:
    """Plan the replay, show it, and (with `execute`) do it and audit it; the exit code."""
    from services.eventing.envelope import now_ms
    from services.tools.oncall import replay

    bootstrap, codec = bootstrap_servers(), catalogue_codec()
    console = report_console(as_json)
    with progress_bar(f"reading {selection.topic}", None) as advance:
        try:
            if service is not None:
                plan = await replay.plan_rewind(
                    bootstrap, selection, service, codec, lambda _: advance()
                )
            else:
                plan = await replay.plan_republish(
                    bootstrap, selection, codec, to_topic, lambda _: advance()
                )
        except replay.ReplayRefused as exc:
            console.print(f"[red]refused:[/red] {exc}")
            if as_json:
                click.echo(json.dumps({"refused": str(exc)}))
            return 1
    report = plan.report()
    report["dry_run"] = not execute
    if not execute:
        emit(report, as_json, lambda r: _render_replay_plan(r, console))
        if not as_json:
            console.print("dry run: nothing written. Add --execute --reason '...' to replay.")
        return 0
    if not as_json:
        _render_replay_plan(report, console)
    operation = audit_trail.Operation(
        "replay.rewind" if service else "replay.republish", reason or ""
    )
    stop = stop_on_ctrl_c()
    if service is not None:
        await replay.rewind(bootstrap, plan, operation.operation_id)
        result: dict[str, Any] = {"rewound": plan.offsets}
        outcome = "completed"
        interrupted = False
    else:
        at = now_ms()

        def headers(candidate: Any) -> list[tuple[str, bytes]]:
            return replay.replay_headers(
                candidate, operation.operation_id, operation.actor, operation.reason, at
            )

        with progress_bar(f"re-publishing to {plan.target_topic}", len(plan.candidates)) as advance:
            published = await replay.republish(
                bootstrap, plan, headers, rate, stop, lambda _: advance()
            )
        interrupted = published.interrupted
        outcome = "interrupted" if interrupted else "completed"
        result = {
            "published": published.published,
            "of": len(plan.candidates),
            "next_positions": {str(p): o for p, o in sorted(published.next_positions.items())},
        }
        if interrupted:
            result["resume_with"] = _resume_command(
                published.next_positions, plan.selection.stop_at
            )
    report.pop("dry_run")
    predicted = {k: report[k] for k in ("records", "by_partition", "effects", "new_effects")}
    await asyncio.to_thread(
        audit_trail.record_now, operation, outcome, report["selection"], predicted, result
    )
    operation_id = operation.operation_id
    summary = {**report, "dry_run": False, "operation_id": operation_id, "outcome": outcome}
    summary["result"] = result
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
    elif service is not None:
        console.print(
            f"rewound {plan.group} on {plan.target_topic}: start {service} to re-read "
            f"{sum(r['redelivered'] for r in plan.offsets)} record(s). Audit: {operation_id}"
        )
    elif interrupted:
        console.print(
            f"[yellow]stopped[/yellow] after {result['published']} of {result['of']} "
            f"record(s). Resume with:\n  {result['resume_with']}"
        )
    else:
        console.print(
            f"re-published {result['published']} record(s) to {plan.target_topic}. "
            f"Audit: {operation_id}"
        )
    return INTERRUPTED_EXIT if interrupted else 0


def _render_replay_plan(report: dict[str, Any], console: Any) -> None:
    """The plan: the rewind's offsets, the records selected, what the consumers would do."""
    if report["mode"] == "rewind":
        rows = [
            [
                r["partition"],
                "none" if r["current"] < 0 else r["current"],
                r["target"],
                r["redelivered"],
            ]
            for r in report["offsets"]
        ]
        console.print(
            table(
                f"rewind {report['group']} on {report['target_topic']}",
                ["partition", "committed now", "target", "records re-read"],
                rows,
            )
        )
    console.print(
        table(
            f"{report['records']} record(s) selected from {report['selection']['topic']}",
            ["partition", "records"],
            [[p, n] for p, n in report["by_partition"].items()],
        )
    )
    if report["by_event_type"]:
        console.print(
            table(
                "by event type",
                ["event type", "records"],
                [[t, n] for t, n in report["by_event_type"].items()],
            )
        )
    print_effects(console, report["effects"], report["target_topic"])
    console.print(f"new effects predicted: {report['new_effects']}")
