"""The `boomerang` command: one entry point for people, docker-compose and the demo.

boomerang run <service>     start one service process (the command docker-compose uses)
boomerang topics [--check]  create missing topics / report drift
boomerang schemas check     the schema evolution gate
boomerang policy explain F  a return's decision (acceptance, liability, refund, destination)
boomerang policy check DIR  validate policy files
boomerang dlq list          dead letters grouped by topic and reason (counts, age)
boomerang dlq show T P O    one dead letter: headers and the payload decoded
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import click

# service name → module whose `main()` runs it as its own OS process
SERVICES: dict[str, str] = {
    "returns": "services.returns.app",
    "coordinator": "services.coordinator.app",
    "pickup": "services.pickup.app",
    "inspection": "services.inspection.app",
    "warehouse-intake": "services.warehouse_intake.app",
    "refund": "services.refund.app",
    "carrier": "services.partners.carrier_server",
    "psp": "services.partners.psp_server",
    "psp-b": "services.partners.psp_server",
    "marketplace": "services.partners.marketplace_server",
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Boomerang: returns, pickups, inspection, warehouse intake and refunds over Kafka."""


@main.command()
@click.argument("service", type=click.Choice(sorted(SERVICES)))
def run(service: str) -> None:
    """Run one SERVICE in this process (Ctrl-C stops it)."""
    try:
        module = importlib.import_module(SERVICES[service])
    except ModuleNotFoundError as exc:
        raise click.ClickException(
            f"service {service!r} is not available in this build ({exc})"
        ) from exc
    sys.exit(module.main())


@main.command()
@click.option("--check", is_flag=True, help="Create nothing; exit 1 on missing topics or drift.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def topics(check: bool, as_json: bool) -> None:
    """Create the declared topics that are missing and report drift."""
    from services.eventing import topic_bootstrap

    sys.exit(
        topic_bootstrap.main([*(["--check"] if check else []), *(["--json"] if as_json else [])])
    )


@main.group()
def schemas() -> None:
    """The Avro event contract."""


@schemas.command("check")
def schemas_check() -> None:
    """Fail unless every schema is backward and forward compatible with its last release."""
    from services.eventing import schema_evolution

    sys.exit(schema_evolution.main(["check"]))


def _policy_dir(option: str | None) -> Path:
    from services.policy.policy_files import policy_dir

    return policy_dir(option)


@main.group()
def policy() -> None:
    """Return policies as data: explain a decision, check policy files."""


@policy.command("explain")
@click.argument("request_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--policies", "policy_dir", help="Policy directory (default deploy/policies).")
def policy_explain(request_file: Path, policy_dir: str | None) -> None:
    """Print the decision for the return in REQUEST_FILE as JSON (no Kafka needed).

    The file format is schemas/policy/return-explain-request.schema.json; examples are in
    deploy/policy-examples/.
    """
    from services.policy.explain import ExplainInputError, explain, parse_request
    from services.policy.policy_files import PolicyError, load_policy_set
    from services.policy.policy_rules import PolicyLookupError

    try:
        policies = load_policy_set(_policy_dir(policy_dir))
    except PolicyError as exc:
        raise click.ClickException(f"the policy files are invalid:\n{exc}") from exc
    try:
        text = request_file.read_text()
    except OSError as exc:
        raise click.ClickException(f"{request_file}: {exc.strerror}") from exc
    try:
        answer = explain(policies, parse_request(text))
    except (ExplainInputError, PolicyLookupError) as exc:
        raise click.ClickException(f"{request_file}: {exc}") from exc
    click.echo(json.dumps(answer, indent=2))


@policy.command("check")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
def policy_check(directory: Path | None) -> None:
    """Validate every policy file in DIRECTORY (default deploy/policies); exit 1 on problems."""
    from services.policy.policy_files import PolicyError, load_policy_set

    target = directory or _policy_dir(None)
    try:
        policies = load_policy_set(target)
    except PolicyError as exc:
        for problem in exc.problems:
            click.echo(f"policy-check: {problem}", err=True)
        click.echo(f"policy-check: {len(exc.problems)} problem(s) in {target}", err=True)
        sys.exit(1)
    for layer in policies.layers:
        click.echo(f"  {layer.label:<40} {layer.file}")
    click.echo(
        f"policy-check: {len(policies.layers)} layer(s), {len(policies.markets)} market(s), "
        f"0 problems (set {policies.digest})"
    )


@main.group()
def dlq() -> None:
    """Dead letters: what could not be processed, where it came from and why.

    Reads KAFKA_BOOTSTRAP_SERVERS (else this checkout's local broker). Read-only.
    """


@dlq.command("list")
@click.option("--topic", help="Only this stream (or its .dlq topic).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def dlq_list(topic: str | None, as_json: bool) -> None:
    """Dead letters grouped by original topic and reason, largest group first."""
    import asyncio

    from services.eventing.envelope import now_ms
    from services.eventing.settings import bootstrap_servers
    from services.operations.dead_letter_report import summarise
    from services.operations.dead_letter_topics import (
        UnknownTopic,
        dead_letter_topics,
        read_dead_letters,
    )

    try:
        dead_letter_topics(topic)
    except UnknownTopic as exc:
        raise click.BadParameter(str(exc), param_hint="--topic") from exc
    letters = asyncio.run(read_dead_letters(bootstrap_servers(), topic))
    report = summarise(letters, now_ms())
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report['total']} dead letter(s)")
    for column in ("original topic", "reason", "count", "max attempt", "oldest", "sample"):
        table.add_column(column)
    for row in report["groups"]:
        sample = row["sample"]
        table.add_row(
            row["original_topic"],
            row["reason"],
            str(row["count"]),
            str(row["max_attempt"]),
            f"{row['oldest_age_s']} s",
            f"{sample['topic']} {sample['partition']} {sample['offset']}",
        )
    Console().print(table)


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
    from services.operations.dead_letter_report import describe
    from services.operations.dead_letter_topics import read_dead_letter

    letter = asyncio.run(read_dead_letter(bootstrap_servers(), topic, partition, offset))
    if letter is None:
        raise click.ClickException(f"no record at {topic} partition {partition} offset {offset}")
    codec = AvroCodec(SchemaCatalogue.load())

    def decode(value: bytes) -> tuple[str, dict]:
        decoded = codec.decode(value)
        return decoded.name, decoded.record

    shown = describe(letter, decode)
    click.echo(json.dumps(shown, default=str, indent=None if as_json else 2))


if __name__ == "__main__":
    main()
