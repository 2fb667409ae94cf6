"""`boomerang saga`: look at one return's saga and steer it (show, list, retry, cancel, resume).

The saga table is read from its changelog, so `show` and `list` work while the coordinator
is down. A person's command is an event on the saga topic, keyed by the return: the
coordinator, the saga's only writer, applies it in order with the return's other events. The
dry run applies it to the current state with the coordinator's own `saga.decide` and shows
the outcome; `--execute --reason` sends it, records an audit event and waits for the
coordinator to apply it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from services.decisions import saga as saga_core
from services.decisions.saga import stored as stored_saga
from services.eventing.settings import bootstrap_servers
from services.tools.oncall import audit_trail
from services.tools.oncall.cli_output import report_console, stdout_console, table
from services.tools.oncall.write_safeguards import end_dry_run, require_reason

DECISIONS = {"refund": "REFUND", "store-credit": "STORE_CREDIT", "reject": "REJECT"}
PRODUCER = "boomerang-cli"
OPERATION_OF = {
    "SagaRetryRequested": "saga.retry",
    "SagaCancelRequested": "saga.cancel",
    "SagaResumeRequested": "saga.resume",
}


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]


async def _sagas(bootstrap: str) -> dict[str, dict[str, Any]]:
    from services.tools.oncall.service_state import read_table

    return await read_table(bootstrap, "coordinator", "sagas")


# How long `show` and the steering commands wait for the coordinator to commit (and so
# write to its changelog) what it applied on the return's partition: a saga is written at
# most every 5 s under load, 2 s after the coordinator goes quiet.
CATCH_UP_S = 10.0


async def _records_behind(bootstrap: str, return_id: str, wait_s: float) -> int:
    """Wait up to `wait_s` until the coordinator has committed every record of the
    return's partition (its changelog then holds every change it applied: the commit never
    passes an unwritten one); how many are still behind (0 when caught up). No wait when
    no coordinator is running."""
    from aiokafka.partitioner import DefaultPartitioner

    from services.tools.oncall.consumer_lag import measure

    deadline = time.monotonic() + wait_s
    while True:
        [group] = (await measure(bootstrap, int(time.time() * 1000), "coordinator"))["groups"]
        partitions = {row["partition"] for row in group["partitions"]}
        mine = DefaultPartitioner()(return_id.encode(), sorted(partitions), sorted(partitions))
        behind = sum(row["lag"] for row in group["partitions"] if row["partition"] == mine)
        if behind == 0 or not group["members"] or time.monotonic() >= deadline:
            return behind  # (a coordinator that is not running commits nothing: no wait)
        await asyncio.sleep(0.25)


async def _archived_view(bootstrap: str, return_id: str) -> dict[str, Any] | None:
    """The view an archived saga was archived with (the latest SagaArchived of the return on
    the compacted archive topic), or None."""
    from services.decisions.saga.archiving import archived_view
    from services.eventing.avro_codec import AvroCodec, CodecError
    from services.eventing.schema_catalogue import SchemaCatalogue
    from services.eventing.topics import SAGA_ARCHIVE
    from services.tools.oncall.topic_reader import read_topic

    codec = AvroCodec(SchemaCatalogue.load())
    found = None
    for message in await read_topic(bootstrap, SAGA_ARCHIVE.name, SAGA_ARCHIVE.partitions):
        if message.key != return_id.encode() or message.value is None:
            continue
        try:
            found = codec.decode(message.value).record
        except CodecError:
            continue
    if found is None:
        return None
    return archived_view(found["view_json"], found["status"], found["finished_at"])


def _view(return_id: str) -> dict[str, Any]:
    """The saga's view: from the changelog (`_state`), else as it was archived."""
    try:
        return saga_core.status_view(_state(return_id))
    except click.ClickException:
        archived = asyncio.run(_archived_view(bootstrap_servers(), return_id))
        if archived is None:
            raise
        return archived


def _state(return_id: str) -> saga_core.SagaState:
    """The saga with its explanation (history, rules fired) put back, once the changelog
    has caught up with the coordinator (or CATCH_UP_S passed: then said on stderr)."""
    bootstrap = bootstrap_servers()
    behind = asyncio.run(_records_behind(bootstrap, return_id, CATCH_UP_S))
    if behind:
        click.echo(
            f"note: the coordinator has {behind} record(s) of this return's partition not "
            "committed yet: the saga below may be behind them",
            err=True,
        )
    stored = asyncio.run(_sagas(bootstrap)).get(return_id)
    if stored is None:
        raise click.ClickException(f"no saga for {return_id} (unknown, or not started yet)")
    return stored_saga.shown_state(stored)


@click.group()
def saga() -> None:
    """One return's saga: its timeline, the stuck ones, and a person's retry/cancel/resume.

    Reads KAFKA_BOOTSTRAP_SERVERS (else this checkout's local broker).
    """


@saga.command("show")
@click.argument("return_id")
@click.option("--json", "as_json", is_flag=True, help="Print the saga as JSON.")
def saga_show(return_id: str, as_json: bool) -> None:
    """The timeline of RETURN_ID: states, events, commands, timers, compensations, rules
    (an archived saga as it was archived)."""
    view = _view(return_id)
    if as_json:
        click.echo(json.dumps(view, indent=2, default=str))
        return
    console = stdout_console()
    archived = f", archived (finished {_when(view['finished_at'])})" if view.get("archived") else ""
    console.print(
        f"[bold]{return_id}[/bold]: {view['status']} (step {view['step']}), "
        f"{len(view['history'])} event(s) since {_when(view['created_at'])}{archived}"
    )
    for entry in view["history"]:
        commands = ", ".join(c["command"] for c in entry.get("commands", []))
        timer = entry.get("timer") or {}
        flags = " (ignored)" if entry.get("ignored") else " (parked)" if entry.get("parked") else ""
        console.print(
            f"{_clock(entry['at'])}  {entry['event_type']}{flags}  {entry['from']} → {entry['to']}",
            highlight=False,
        )
        if commands:
            console.print(f"    sent: {commands}", highlight=False)
        if timer:
            console.print(f"    timer: {timer['kind']} due {_when(timer['due_at'])}")
        if entry.get("note"):
            console.print(f"    note: {entry['note']}", highlight=False)
    timer = view["timer"] or {}
    if timer:
        console.print(f"timer: {timer['kind']} due {_when(timer['due_at'])}")
    else:
        console.print("timer: none")
    console.print(f"compensations registered: {', '.join(view['compensations_registered']) or '-'}")
    if view["compensation"]:
        comp = view["compensation"]
        console.print(
            f"compensation: done {comp.get('done')}, pending {comp.get('pending')}: "
            f"{comp.get('reason')}"
        )
    for rule in view["rules_fired"]:
        console.print(f"rule {rule['rule_id']}: {rule['effect']}")
    if view["outcome"]:
        console.print(f"outcome: {json.dumps(view['outcome'])}")


@saga.command("list")
@click.option(
    "--state",
    "status",
    type=click.Choice([str(s) for s in saga_core.Status]),
    help="Only sagas in this state.",
)
@click.option("--stuck-for", help="Only unfinished sagas unchanged for this long (30m, 2h).")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def saga_list(status: str | None, stuck_for: str | None, limit: int, as_json: bool) -> None:
    """Sagas by state, oldest change first; --stuck-for finds the ones that stopped moving."""
    from services.eventing.envelope import now_ms
    from services.tools.oncall.record_selection import SelectionError, parse_duration_ms

    try:
        quiet_ms = parse_duration_ms(stuck_for, "--stuck-for") if stuck_for else None
    except SelectionError as exc:
        raise click.BadParameter(str(exc), param_hint="--stuck-for") from exc
    now = now_ms()
    rows = []
    counts: dict[str, int] = {}
    for return_id, stored in asyncio.run(_sagas(bootstrap_servers())).items():
        state = stored_saga.loaded_state(stored)
        counts[str(state.status)] = counts.get(str(state.status), 0) + 1
        if status is not None and str(state.status) != status:
            continue
        if quiet_ms is not None and (state.terminal or now - state.updated_at < quiet_ms):
            continue
        rows.append(
            {
                "return_id": return_id,
                "status": str(state.status),
                "step": saga_core.STEP_OF[state.status],
                "unchanged_for_s": round((now - state.updated_at) / 1000, 1),
                "updated_at": _when(state.updated_at),
                "timer_due_at": _when((state.timer or {}).get("due_at")),
                "reason": (state.outcome or {}).get("reason", ""),
            }
        )
    rows.sort(key=lambda r: -r["unchanged_for_s"])
    report = {"counts": dict(sorted(counts.items())), "matching": len(rows), "sagas": rows[:limit]}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    columns = ["return_id", "status", "unchanged_for_s", "timer_due_at", "reason"]
    stdout_console().print(
        table(
            f"{len(rows)} saga(s) match (of {sum(counts.values())})",
            columns,
            [[r[c] for c in columns] for r in rows[:limit]],
        )
    )


def _operator_event(
    name: str, state: saga_core.SagaState, actor: str, reason: str, operation_id: str, **body: Any
) -> dict[str, Any]:
    from services.eventing.envelope import deterministic_event_id, new_envelope

    envelope = new_envelope(
        name,
        state.return_id,
        PRODUCER,
        correlation_id=state.correlation_id or None,
        event_id=deterministic_event_id(state.return_id, "operator", operation_id),
    )
    return {
        "envelope": envelope,
        "requested_by": actor,
        "reason": reason,
        "operation_id": operation_id,
        **body,
    }


def _outcome(state: saga_core.SagaState, transition: saga_core.Transition) -> dict[str, Any]:
    entry = transition.state.history[-1] if transition.state.history else {}
    return {
        "from": str(state.status),
        "to": str(transition.state.status),
        "ignored": transition.ignored,
        "commands": [name for name, _ in transition.commands],
        "note": entry.get("note", ""),
    }


def _steer(
    name: str,
    return_id: str,
    reason: str | None,
    execute: bool,
    as_json: bool,
    wait_s: float,
    **body: Any,
) -> None:
    """Dry-run the operator event `name` on the saga of `return_id`, or (with `execute`) send
    it, audit it and wait up to `wait_s` for the coordinator to apply it."""
    from services.eventing.envelope import now_ms

    require_reason(execute, reason, "the saga and the audit")
    state = _state(return_id)
    operation = audit_trail.Operation(OPERATION_OF[name], reason or "")
    operation_id, actor = operation.operation_id, operation.actor
    record = _operator_event(name, state, actor, reason or "(dry run)", operation_id, **body)
    predicted = _outcome(state, saga_core.decide(state, name, record, now_ms()))
    report: dict[str, Any] = {"return_id": return_id, "command": name, "predicted": predicted}
    console = report_console(as_json)
    if not as_json:
        verb = "does nothing" if predicted["ignored"] else "moves"
        console.print(
            f"{return_id}: {name} {verb}: {predicted['from']} → {predicted['to']}; sends "
            f"{', '.join(predicted['commands']) or 'nothing'}. {predicted['note']}"
        )
    if not execute:
        end_dry_run(
            report,
            as_json,
            console,
            "dry run: nothing sent. Add --execute --reason '...' to send it.",
        )
        return
    if predicted["ignored"]:
        report["refused"] = predicted["note"]
        if as_json:
            click.echo(json.dumps(report, indent=2))
        else:
            console.print(f"[red]refused:[/red] {predicted['note']}")
        sys.exit(1)
    asyncio.run(_send(name, record))
    applied = asyncio.run(_wait_applied(return_id, record["envelope"]["event_id"], wait_s))
    result = {"event_id": record["envelope"]["event_id"], "applied": applied}
    selection = {"return_id": return_id, **{k: str(v) for k, v in body.items()}}
    audit_trail.record_now(operation, "completed", selection, predicted, result)
    report.update(dry_run=False, operation_id=operation_id, result=result)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    elif applied:
        console.print(
            f"applied: now {applied['to']}; sent {', '.join(applied.get('commands', [])) or '-'}."
            f" Audit: {operation_id}. Follow with: boomerang saga show {return_id}"
        )
    else:
        console.print(
            f"sent; the coordinator has not applied it within {wait_s:.0f}s (is it running? "
            f"boomerang lag --service coordinator). Audit: {operation_id}"
        )


async def _send(name: str, record: dict[str, Any]) -> None:
    from aiokafka import AIOKafkaProducer

    from services.eventing.event_publisher import EventPublisher, producer_settings
    from services.tools.oncall.topic_reader import catalogue_codec

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(), **producer_settings())
    await producer.start()
    try:
        await EventPublisher(producer, catalogue_codec()).publish(name, record)
    finally:
        await producer.stop()


async def _wait_applied(return_id: str, event_id: str, wait_s: float) -> dict[str, Any] | None:
    """The saga's history entry for `event_id` once the coordinator has applied it."""
    deadline = time.monotonic() + wait_s
    while True:
        stored = (await _sagas(bootstrap_servers())).get(return_id)
        for entry in stored_saga.shown_state(stored).history if stored else ():
            if entry.get("event_id") == event_id:
                return {
                    "to": entry["to"],
                    "commands": [c["command"] for c in entry.get("commands", [])],
                    "note": entry.get("note", ""),
                }
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(1)


_REASON = click.option("--reason", help="Why (required with --execute).")
_EXECUTE = click.option("--execute", is_flag=True, help="Send it. Without it this is a dry run.")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
_WAIT = click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the coordinator to apply it.",
)


def _steering_options(command: Callable[..., None]) -> Callable[..., None]:
    """--reason, --execute, --wait and --json, shared by retry, cancel and resume."""
    return _REASON(_EXECUTE(_WAIT(_JSON(command))))


@saga.command("retry")
@click.argument("return_id")
@_steering_options
def saga_retry(
    return_id: str, reason: str | None, execute: bool, wait_s: float, as_json: bool
) -> None:
    """Re-issue the current step's command (the step's idempotency key, the next try): a
    partner that did it already answers with what it did, so nothing happens twice."""
    _steer("SagaRetryRequested", return_id, reason, execute, as_json, wait_s)


@saga.command("cancel")
@click.argument("return_id")
@_steering_options
def saga_cancel(
    return_id: str, reason: str | None, execute: bool, wait_s: float, as_json: bool
) -> None:
    """Cancel the return: cancel its pickup, or run its compensations last first; it ends
    CANCELLED (or NEEDS_ATTENTION when a refund was paid already)."""
    _steer("SagaCancelRequested", return_id, reason, execute, as_json, wait_s)


@saga.command("resume")
@click.argument("return_id")
@click.option("--decision", required=True, type=click.Choice(sorted(DECISIONS)))
@_steering_options
def saga_resume(
    return_id: str,
    decision: str,
    reason: str | None,
    execute: bool,
    wait_s: float,
    as_json: bool,
) -> None:
    """A needs-attention return after a person's decision: refund it (the same key finds an
    earlier payment), refund it as store credit, or reject it."""
    _steer(
        "SagaResumeRequested",
        return_id,
        reason,
        execute,
        as_json,
        wait_s,
        decision=DECISIONS[decision],
    )
