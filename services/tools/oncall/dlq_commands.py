"""`boomerang dlq`: dead letters listed by topic and reason, one shown whole, redriven to
their topic after a fix, or purged for good (the writes are dry runs first)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

import click

from services.eventing.settings import bootstrap_servers
from services.tools.oncall import audit_trail
from services.tools.oncall.cli_output import print_effects, progress_bar, report_console, table
from services.tools.oncall.topic_reader import catalogue_codec
from services.tools.oncall.write_safeguards import (
    INTERRUPTED_EXIT,
    end_dry_run,
    require_reason,
    stop_on_ctrl_c,
)


def _dead_letter_topics(topic: str | None) -> list[Any]:
    """The DLQ topics `--topic` names (all of them without it); a bad name is a usage error."""
    from services.tools.oncall.dead_letter_topics import UnknownTopic, dead_letter_topics

    try:
        return dead_letter_topics(topic)
    except UnknownTopic as exc:
        raise click.BadParameter(str(exc), param_hint="--topic") from exc


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
    from services.tools.oncall.dead_letter_redrive import already_redriven
    from services.tools.oncall.dead_letter_report import summarise
    from services.tools.oncall.dead_letter_topics import read_dead_letters

    _dead_letter_topics(topic)
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
    from services.tools.oncall.dead_letter_report import describe
    from services.tools.oncall.dead_letter_topics import read_dead_letter

    letter = asyncio.run(read_dead_letter(bootstrap_servers(), topic, partition, offset))
    if letter is None:
        raise click.ClickException(f"no record at {topic} partition {partition} offset {offset}")
    codec = catalogue_codec()

    def decode(value: bytes) -> tuple[str, dict]:
        decoded = codec.decode(value)
        return decoded.name, decoded.record

    shown = describe(letter, decode)
    click.echo(json.dumps(shown, default=str, indent=None if as_json else 2))


def _letter_filter(letters: tuple[str, ...]) -> set[str]:
    """The `--letter` positions, each checked to be DLQ_TOPIC/PARTITION/OFFSET."""
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
    if not (topic or error_reasons or letters or return_ids or everything):
        raise click.UsageError(
            "say which letters: --topic, --error-reason, --letter, --return-id or --all"
        )
    require_reason(execute, reason, "the headers and audit")
    positions = _letter_filter(letters)
    _dead_letter_topics(topic)
    chosen = _Chosen(topic, set(error_reasons), positions, set(return_ids))
    sys.exit(asyncio.run(_redrive(chosen, reason, execute, as_json)))


@dataclass(frozen=True)
class _Chosen:
    """Which dead letters `dlq redrive` was asked for."""

    topic: str | None
    error_reasons: set[str]
    positions: set[str]
    return_ids: set[str]


def _return_id_of(letter: Any, codec: Any) -> str | None:
    """The letter's return id: from its envelope, else its key (None without either)."""
    from services.eventing.avro_codec import CodecError

    try:
        return codec.decode(letter.value or b"").record["envelope"]["return_id"]
    except (CodecError, KeyError, TypeError):
        return letter.key.decode("utf-8", "replace") if letter.key else None


async def _redrive(chosen: _Chosen, reason: str | None, execute: bool, as_json: bool) -> int:
    """Plan the redrive, show it, and (with `execute`) send and audit it; the exit code."""
    from services.eventing.envelope import now_ms
    from services.tools.oncall import dead_letter_redrive as redrive
    from services.tools.oncall.dead_letter_topics import read_dead_letters

    bootstrap = bootstrap_servers()
    console = report_console(as_json)
    codec = catalogue_codec()
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
        hint = "dry run: nothing written. Add --execute --reason '...' to redrive."
        end_dry_run(report, as_json, console, hint)
        return 0
    operation, at = audit_trail.Operation(redrive.REDRIVE, reason or ""), now_ms()
    operation_id = operation.operation_id
    stop = stop_on_ctrl_c()
    with progress_bar("redriving", len(plan.letters)) as advance:
        sent = await redrive.redrive(
            bootstrap,
            plan,
            lambda letter: redrive.redrive_headers(
                letter, operation_id, operation.actor, operation.reason, at
            ),
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
    await asyncio.to_thread(audit_trail.record_now, operation, outcome, selection, report, result)
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
    """The plan: letters per topic and reason, those skipped, what the consumers would do."""
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
        print_effects(console, effects, topic)
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
    from services.tools.oncall.dead_letter_topics import read_dead_letters
    from services.tools.oncall.record_selection import SelectionError, parse_duration_ms

    [dlq_spec] = _dead_letter_topics(topic)
    try:
        cutoff = now_ms() - parse_duration_ms(older_than, "--older-than") if older_than else None
    except SelectionError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from exc
    require_reason(execute, reason, "the audit event")
    bootstrap = bootstrap_servers()
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
    console = report_console(as_json)
    if execute and going:
        operation = audit_trail.Operation(redrive.PURGE, reason or "")
        low = asyncio.run(redrive.delete_before(bootstrap, dlq_spec.name, cut))
        result = {**report, "positions": [redrive.position(m) for m in going], "low": low}
        audit_trail.record_now(
            operation,
            "completed",
            {"topic": dlq_spec.name, "older_than": older_than},
            dict(report),
            result,
        )
        report.update(operation_id=operation.operation_id)
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
