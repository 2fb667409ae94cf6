"""`boomerang risk check FILE`: a rule set validated before it is deployed.

`boomerang risk backtest --rules FILE --from … --to …`: the orders, accepted returns and
inspections on the topics replayed through a rule set (services/decisions/risk/
history_replay.py): per rule its hits and, where the truth is known (a reviewer's verdict,
else what the inspection confirmed or found none of), its precision and recall; the outcomes
it would have given. Reads the topics without a consumer group and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import yaml

from services.decisions.risk.backtest import backtest
from services.decisions.risk.history_replay import HistoryEvent, replay
from services.decisions.risk.return_features import known_features
from services.decisions.risk.rule_sets import RuleSetError, parse_rule_set
from services.eventing.avro_codec import AvroCodec, CodecError
from services.eventing.schema_catalogue import SchemaCatalogue
from services.eventing.topics import INSPECTION_EVENTS, ORDERS, RETURNS_EVENTS, RISK_EVENTS

REPLAYED = ("OrderPlaced", "ReturnAccepted", "InspectionRecorded")


def _instant(_ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 instant or date") from None


@click.group()
def risk() -> None:
    """Risk rules: back-test a rule set on the history in the topics."""


@risk.command("check")
@click.argument("rules_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def risk_check(rules_file: Path) -> None:
    """Validate a rule set file (its shape, and that every feature it reads exists): exit 1
    naming what is wrong, else list its rules and what each reads."""
    try:
        rules = parse_rule_set(yaml.safe_load(rules_file.read_text()), str(rules_file))
    except (RuleSetError, yaml.YAMLError) as exc:
        raise click.ClickException(str(exc)) from exc
    known = known_features()
    unknown = {
        rule.rule_id: sorted(rule.condition.features() - known)
        for rule in rules.rules
        if rule.condition.features() - known
    }
    if unknown:  # a misspelt feature never fires: refused, not silently dead
        raise click.ClickException(f"{rules_file}: features no return has: {unknown}")
    thresholds = ", ".join(f"{o.value} from {score}" for o, score in rules.thresholds.items())
    click.echo(f"{rules.name} v{rules.version}: {len(rules.rules)} rules; {thresholds}")
    for rule in rules.rules:
        reads = ", ".join(sorted(rule.condition.features()))
        click.echo(f"  {rule.rule_id:<22} score {rule.score:>4}  reads {reads}")


@risk.command("backtest")
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The rule set (YAML or JSON), e.g. deploy/risk/live.yaml.",
)
@click.option("--from", "start_ms", callback=_instant, required=True, help="First instant judged.")
@click.option(
    "--to", "end_ms", callback=_instant, required=True, help="Instant judged up to (excluded)."
)
@click.option(
    "--history",
    "history_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="More history, as JSON lines {name, at_ms, record} (the demo writes its seeded year "
    "to risk-history.jsonl in its run directory), replayed with the topics'.",
)
@click.option("--json", "as_json", is_flag=True)
def risk_backtest(
    rules_file: Path, start_ms: int, end_ms: int, history_file: Path | None, as_json: bool
) -> None:
    """Replay the history through RULES; events before --from only feed the windows."""
    from services.eventing.settings import bootstrap_servers
    from services.tools.oncall.topic_reader import read_topic

    try:
        rules = parse_rule_set(yaml.safe_load(rules_file.read_text()), str(rules_file))
    except (RuleSetError, yaml.YAMLError) as exc:
        raise click.ClickException(str(exc)) from exc
    codec = AvroCodec(SchemaCatalogue.load())
    bootstrap = bootstrap_servers()

    verdicts: dict[str, bool] = {}

    async def history() -> list[HistoryEvent]:
        events, unreadable = [], 0
        for message in await read_topic(bootstrap, RISK_EVENTS.name, RISK_EVENTS.partitions):
            try:
                decoded = codec.decode(message.value)
            except CodecError:
                continue
            if decoded.name == "RiskReviewDecided":
                return_id = decoded.record["envelope"]["return_id"]
                verdicts.setdefault(return_id, decoded.record["verdict"] == "deny")
        click.echo(f"read {len(verdicts)} reviewers' verdicts of {RISK_EVENTS.name}", err=True)
        for topic in (ORDERS, RETURNS_EVENTS, INSPECTION_EVENTS):
            records = await read_topic(bootstrap, topic.name, topic.partitions)
            click.echo(f"read {len(records)} records of {topic.name}", err=True)
            for message in records:
                try:
                    decoded = codec.decode(message.value)
                except CodecError:
                    unreadable += 1
                    continue
                if decoded.name in REPLAYED:
                    at = int(decoded.record["envelope"]["occurred_at"])
                    events.append(HistoryEvent(decoded.name, at, decoded.record))
        if unreadable:
            click.echo(f"skipped {unreadable} records that do not decode", err=True)
        return events

    events = asyncio.run(history())
    if history_file is not None:
        events += history_lines(history_file)
    judged = replay(events, rules, start_ms, end_ms, verdicts)
    result = backtest(judged, [rule.rule_id for rule in rules.rules])
    report: dict[str, Any] = {
        "rule_set": rules.name,
        "version": rules.version,
        "returns_judged": result.returns,
        "outcomes": result.outcomes,
        "rules": [
            {
                "rule_id": q.rule_id,
                "hits": q.hits,
                "known": q.known,
                "true_positives": q.true_positives,
                "precision": None if q.precision is None else round(q.precision, 4),
                "recall": None if q.recall is None else round(q.recall, 4),
            }
            for q in result.rules
        ],
    }
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(
        f"{rules.name} v{rules.version}: {result.returns} returns judged; outcomes "
        + ", ".join(f"{k} {v}" for k, v in result.outcomes.items())
    )
    click.echo(
        f"{'rule':<22} {'hits':>6} {'known':>6} {'true+':>6} {'precision':>10} {'recall':>8}"
    )
    for row in report["rules"]:
        precision = "-" if row["precision"] is None else f"{row['precision']:.2%}"
        recall = "-" if row["recall"] is None else f"{row['recall']:.2%}"
        click.echo(
            f"{row['rule_id']:<22} {row['hits']:>6} {row['known']:>6} "
            f"{row['true_positives']:>6} {precision:>10} {recall:>8}"
        )


def history_lines(path: Path) -> list[HistoryEvent]:
    """History events from JSON lines {name, at_ms, record}; a line that is not one is
    refused with its number."""
    events = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            event = HistoryEvent(str(row["name"]), int(row["at_ms"]), dict(row["record"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise click.ClickException(f"{path}:{number}: not a history event ({exc})") from exc
        if event.name in REPLAYED:
            events.append(event)
    click.echo(f"read {len(events)} history events of {path}", err=True)
    return events
