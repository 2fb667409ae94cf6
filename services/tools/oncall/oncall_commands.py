"""The on-call commands of `boomerang`: replay, dlq, lag (and saga, in saga_commands).

Every command that writes runs as a dry run unless given `--execute`, needs `--reason` to
execute, shows progress on stderr and records an audit event. `--json` prints one JSON
document on stdout. Exit codes: 0 done, 1 refused or failed, 2 bad arguments, 130 stopped
by Ctrl-C (with the command that resumes).
"""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

import click

from services.eventing.topics import STREAMS
from services.tools.oncall import audit_trail
from services.tools.oncall.cli_output import (
    emit,
    progress_bar,
    stderr_console,
    stdout_console,
    table,
)

INTERRUPTED_EXIT = 130


def _stop_on_ctrl_c() -> asyncio.Event:
    """An event set by Ctrl-C (SIGINT/SIGTERM) so a write stops between two records."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


def _bootstrap() -> str:
    from services.eventing.settings import bootstrap_servers

    return bootstrap_servers()


def _codec() -> Any:
    from services.eventing.avro_codec import AvroCodec
    from services.eventing.schema_catalogue import SchemaCatalogue

    return AvroCodec(SchemaCatalogue.load())


def _render_effects(console: Any, effects: dict[str, dict[str, int]], target: str) -> None:
    if not effects:
        console.print(f"no known consumer reads {target}: nothing would be processed")
        return
    rows = [
        [name, v["new"], v["already_applied"], v["ignored"], v["dead_letter"]]
        for name, v in effects.items()
    ]
    console.print(
        table(
            f"what the consumers of {target} would do (from their dedupe state)",
            ["consumer", "new effects", "already applied", "ignored", "to DLQ"],
            rows,
        )
    )


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


# ---------------------------------------------------------------- replay

STREAM_NAMES = [s.name for s in STREAMS]


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
    if execute and not (reason and reason.strip()):
        raise click.UsageError("--execute needs --reason (it goes into the headers and audit)")
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
    selection: Any,
    service: str | None,
    to_topic: str | None,
    rate: float | None,
    reason: str | None,
    execute: bool,
    as_json: bool,
) -> int:
    from services.eventing.envelope import now_ms
    from services.tools.oncall import replay

    bootstrap, codec = _bootstrap(), _codec()
    console = stderr_console() if as_json else stdout_console()
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
    operation_id, actor = audit_trail.new_operation_id(), audit_trail.current_actor()
    stop = _stop_on_ctrl_c()
    if service is not None:
        await replay.rewind(bootstrap, plan, operation_id)
        result: dict[str, Any] = {"rewound": plan.offsets}
        outcome = "completed"
        interrupted = False
    else:
        at = now_ms()

        def headers(candidate: Any) -> list[tuple[str, bytes]]:
            return replay.replay_headers(candidate, operation_id, actor, reason or "", at)

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
    operation = "replay.rewind" if service else "replay.republish"
    predicted = {k: report[k] for k in ("records", "by_partition", "effects", "new_effects")}
    await asyncio.to_thread(
        audit_trail.record_now,
        operation,
        operation_id,
        actor,
        reason or "",
        outcome,
        report["selection"],
        predicted,
        result,
    )
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
    _render_effects(console, report["effects"], report["target_topic"])
    console.print(f"new effects predicted: {report['new_effects']}")


# ---------------------------------------------------------------- dlq


@click.group()
def dlq() -> None:
    """Dead letters: what could not be processed, where it came from and why; redrive
    them after a fix, purge them for good.

    Reads KAFKA_BOOTSTRAP_SERVERS (else this checkout's local broker).
    """


@dlq.command("list")
@click.option("--topic", help="Only this stream (or its .dlq topic).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def dlq_list(topic: str | None, as_json: bool) -> None:
    """Dead letters grouped by original topic and reason, largest group first (with how many
    were redriven already)."""
    from services.eventing.envelope import now_ms
    from services.eventing.settings import bootstrap_servers
    from services.tools.oncall.dead_letter_redrive import already_redriven
    from services.tools.oncall.dead_letter_report import summarise
    from services.tools.oncall.dead_letter_topics import (
        UnknownTopic,
        dead_letter_topics,
        read_dead_letters,
    )

    try:
        dead_letter_topics(topic)
    except UnknownTopic as exc:
        raise click.BadParameter(str(exc), param_hint="--topic") from exc
    letters = asyncio.run(read_dead_letters(bootstrap_servers(), topic))
    trail = asyncio.run(audit_trail.read_trail(bootstrap_servers()))
    report = summarise(letters, now_ms(), frozenset(already_redriven(trail)))
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    title = f"{report['total']} dead letter(s), {report['not_redriven']} not redriven"
    table = Table(title=title)
    for column in (
        "original topic",
        "reason",
        "count",
        "redriven",
        "max attempt",
        "oldest",
        "sample: partition offset",
    ):
        table.add_column(column)
    for row in report["groups"]:
        sample = row["sample"]
        table.add_row(
            row["original_topic"],
            row["reason"],
            str(row["count"]),
            str(row["redriven"]),
            str(row["max_attempt"]),
            f"{row['oldest_age_s']} s",
            f"{sample['partition']} {sample['offset']}",
        )
    Console().print(table)
    Console().print("one of them: boomerang dlq show <original topic>.dlq PARTITION OFFSET")


@dlq.command("show")
@click.argument("topic")
@click.argument("partition", type=click.IntRange(min=0))
@click.argument("offset", type=click.IntRange(min=0))
@click.option("--json", "as_json", is_flag=True, help="Print compact JSON (one line).")
def dlq_show(topic: str, partition: int, offset: int, as_json: bool) -> None:
    """One dead letter (TOPIC PARTITION OFFSET, as `dlq list` samples it): every header and
    the payload decoded to JSON, or why it cannot be decoded."""
    import asyncio

    from services.eventing.avro_codec import AvroCodec
    from services.eventing.schema_catalogue import SchemaCatalogue
    from services.eventing.settings import bootstrap_servers
    from services.tools.oncall.dead_letter_report import describe
    from services.tools.oncall.dead_letter_topics import read_dead_letter

    letter = asyncio.run(read_dead_letter(bootstrap_servers(), topic, partition, offset))
    if letter is None:
        raise click.ClickException(f"no record at {topic} partition {partition} offset {offset}")
    codec = AvroCodec(SchemaCatalogue.load())

    def decode(value: bytes) -> tuple[str, dict]:
        decoded = codec.decode(value)
        return decoded.name, decoded.record

    shown = describe(letter, decode)
    click.echo(json.dumps(shown, default=str, indent=None if as_json else 2))


def _letter_filter(letters: tuple[str, ...]) -> set[str]:
    positions = set()
    for text in letters:
        parts = text.rsplit("/", 2)
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise click.BadParameter(
                f"{text!r} is not DLQ_TOPIC/PARTITION/OFFSET", param_hint="--letter"
            )
        positions.add(text)
    return positions


@dlq.command("redrive")
@click.option("--topic", help="Dead letters of this stream (or its .dlq topic).")
@click.option("--error-reason", "error_reasons", multiple=True, help="Only this dlq reason.")
@click.option("--letter", "letters", multiple=True, help="One letter: DLQ_TOPIC/PARTITION/OFFSET.")
@click.option("--return-id", "return_ids", multiple=True, help="Only this return's letters.")
@click.option("--all", "everything", is_flag=True, help="Every dead letter of every topic.")
@click.option("--reason", help="Why (required with --execute; goes into headers and audit).")
@click.option("--execute", is_flag=True, help="Write. Without it this is a dry run.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def dlq_redrive(
    topic: str | None,
    error_reasons: tuple[str, ...],
    letters: tuple[str, ...],
    return_ids: tuple[str, ...],
    everything: bool,
    reason: str | None,
    execute: bool,
    as_json: bool,
) -> None:
    """Send dead letters back to their original topic after the fix (dry run by default).

    A letter that fails again returns to the DLQ with its attempt count raised; a letter
    already redriven (per the audit trail) is skipped.
    """
    from services.tools.oncall.dead_letter_topics import UnknownTopic, dead_letter_topics

    if not (topic or error_reasons or letters or return_ids or everything):
        raise click.UsageError(
            "say which letters: --topic, --error-reason, --letter, --return-id or --all"
        )
    if execute and not (reason and reason.strip()):
        raise click.UsageError("--execute needs --reason (it goes into the headers and audit)")
    positions = _letter_filter(letters)
    try:
        dead_letter_topics(topic)
    except UnknownTopic as exc:
        raise click.BadParameter(str(exc), param_hint="--topic") from exc
    chosen = _Chosen(topic, set(error_reasons), positions, set(return_ids))
    sys.exit(asyncio.run(_redrive(chosen, reason, execute, as_json)))


@dataclass(frozen=True)
class _Chosen:
    topic: str | None
    error_reasons: set[str]
    positions: set[str]
    return_ids: set[str]


def _return_id_of(letter: Any, codec: Any) -> str | None:
    from services.eventing.avro_codec import CodecError

    try:
        return codec.decode(letter.value or b"").record["envelope"]["return_id"]
    except (CodecError, KeyError, TypeError):
        return letter.key.decode("utf-8", "replace") if letter.key else None


async def _redrive(chosen: _Chosen, reason: str | None, execute: bool, as_json: bool) -> int:
    from services.eventing.envelope import now_ms
    from services.tools.oncall import dead_letter_redrive as redrive
    from services.tools.oncall.dead_letter_topics import read_dead_letters

    bootstrap = _bootstrap()
    console = stderr_console() if as_json else stdout_console()
    codec = _codec()
    letters = await read_dead_letters(bootstrap, chosen.topic)
    if chosen.return_ids:
        letters = [m for m in letters if _return_id_of(m, codec) in chosen.return_ids]
    skip = redrive.already_redriven(await audit_trail.read_trail(bootstrap))
    to_send, skipped = redrive.choose(letters, chosen.error_reasons, chosen.positions, skip)
    plan = await redrive.plan_redrive(bootstrap, to_send, skipped, codec)
    report = plan.report()
    if not as_json:
        _render_redrive_plan(report, console)
    if not execute:
        report["dry_run"] = True
        if as_json:
            click.echo(json.dumps(report, indent=2))
        else:
            console.print("dry run: nothing written. Add --execute --reason '...' to redrive.")
        return 0
    operation_id, actor, at = audit_trail.new_operation_id(), audit_trail.current_actor(), now_ms()
    stop = _stop_on_ctrl_c()
    with progress_bar("redriving", len(plan.letters)) as advance:
        sent = await redrive.redrive(
            bootstrap,
            plan,
            lambda letter: redrive.redrive_headers(letter, operation_id, actor, reason or "", at),
            stop,
            lambda _: advance(),
        )
    interrupted = len(sent) < len(plan.letters)
    outcome = "interrupted" if interrupted else "completed"
    result = {"redriven": sent, "of": len(plan.letters)}
    selection = {
        "topic": chosen.topic,
        "error_reasons": sorted(chosen.error_reasons),
        "letters": sorted(chosen.positions),
        "return_ids": sorted(chosen.return_ids),
    }
    await asyncio.to_thread(
        audit_trail.record_now,
        redrive.REDRIVE,
        operation_id,
        actor,
        reason or "",
        outcome,
        selection,
        report,
        result,
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    **report,
                    "dry_run": False,
                    "operation_id": operation_id,
                    "outcome": outcome,
                    "result": result,
                },
                indent=2,
            )
        )
    else:
        rest = " (stopped by Ctrl-C: the same command redrives the rest)" if interrupted else ""
        console.print(
            f"redrove {len(sent)} of {len(plan.letters)} letter(s){rest}. Audit: {operation_id}. "
            "Check with: boomerang dlq list"
        )
    return INTERRUPTED_EXIT if interrupted else 0


def _render_redrive_plan(report: dict[str, Any], console: Any) -> None:
    rows = [[g["original_topic"], g["reason"], g["count"]] for g in report["by_topic_and_reason"]]
    console.print(
        table(
            f"{report['letters']} letter(s) to redrive (highest attempt {report['max_attempt']})",
            ["original topic", "reason", "letters"],
            rows,
        )
    )
    if report["skipped_already_redriven"]:
        console.print(f"skipped, redriven before: {len(report['skipped_already_redriven'])}")
    for topic, effects in report["effects"].items():
        _render_effects(console, effects, topic)
    console.print(f"new effects predicted: {report['new_effects']}")


@dlq.command("purge")
@click.option("--topic", required=True, help="The stream (or its .dlq topic) to purge.")
@click.option("--older-than", help="Only letters older than this (30m, 12h, 7d).")
@click.option("--reason", help="Why (required with --execute; goes into the audit).")
@click.option("--execute", is_flag=True, help="Delete. Without it this is a dry run.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def dlq_purge(
    topic: str, older_than: str | None, reason: str | None, execute: bool, as_json: bool
) -> None:
    """Delete a DLQ's letters for good (all, or the oldest ones); the audit event keeps what
    went (count per reason and positions). Kafka deletes a prefix of each partition."""
    from services.eventing.envelope import now_ms
    from services.tools.oncall import dead_letter_redrive as redrive
    from services.tools.oncall.dead_letter_topics import (
        UnknownTopic,
        dead_letter_topics,
        read_dead_letters,
    )
    from services.tools.oncall.record_selection import SelectionError, parse_duration_ms

    try:
        [dlq_spec] = dead_letter_topics(topic)
    except UnknownTopic as exc:
        raise click.BadParameter(str(exc), param_hint="--topic") from exc
    try:
        cutoff = now_ms() - parse_duration_ms(older_than, "--older-than") if older_than else None
    except SelectionError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from exc
    if execute and not (reason and reason.strip()):
        raise click.UsageError("--execute needs --reason (it goes into the audit event)")
    bootstrap = _bootstrap()
    letters = asyncio.run(read_dead_letters(bootstrap, topic))
    cut = redrive.purge_cut(letters, cutoff)
    going = redrive.purged_letters(letters, cut)
    report: dict[str, Any] = {
        "dlq_topic": dlq_spec.name,
        "letters": len(letters),
        "purged": len(going),
        "kept": len(letters) - len(going),
        "by_reason": dict(Counter(letter.reason for letter in going).most_common()),
        "delete_before": {str(p): o for p, o in sorted(cut.items())},
        "dry_run": not execute,
    }
    console = stderr_console() if as_json else stdout_console()
    if execute and going:
        operation_id = audit_trail.new_operation_id()
        low = asyncio.run(redrive.delete_before(bootstrap, dlq_spec.name, cut))
        result = {**report, "positions": [redrive.position(m) for m in going], "low": low}
        audit_trail.record_now(
            redrive.PURGE,
            operation_id,
            audit_trail.current_actor(),
            reason or "",
            "completed",
            {"topic": dlq_spec.name, "older_than": older_than},
            dict(report),
            result,
        )
        report.update(operation_id=operation_id)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    console.print(
        table(
            f"{dlq_spec.name}: {report['purged']} of {report['letters']} letter(s) "
            + ("purged" if execute else "would be purged"),
            ["reason", "letters"],
            [[r, n] for r, n in report["by_reason"].items()],
        )
    )
    if not execute:
        console.print("dry run: nothing deleted. Add --execute --reason '...' to purge.")
    elif going:
        console.print(f"purged. Audit: {report['operation_id']}")


# ---------------------------------------------------------------- audit


@click.command()
@click.option("--operation", help="Only this operation (e.g. replay.republish, dlq.redrive).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the events as JSON.")
def audit(operation: str | None, limit: int, as_json: bool) -> None:
    """The newest on-call operations from boomerang.operations.audit: who, what, when, why,
    what the dry run predicted and what happened."""
    events = asyncio.run(audit_trail.read_trail(_bootstrap()))
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


# ---------------------------------------------------------------- lag


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
    report = asyncio.run(measure(_bootstrap(), now_ms(), service))

    def render(report: dict[str, Any]) -> None:
        console = stderr_console() if as_json else stdout_console()
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
    return "-" if seconds is None else f"{seconds} s"
