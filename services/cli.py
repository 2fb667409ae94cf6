"""The `boomerang` command: one entry point for people, docker-compose and the demo.

boomerang run <service>     start one service process (the command docker-compose uses)
boomerang topics [--check | --apply-settings]  create missing topics / report drift
boomerang topics migrate --check | --yes [--partitions N]  move topics to a new partition count
boomerang schemas check     the schema evolution gate
boomerang policy explain F  a return's decision (acceptance, liability, refund, destination)
boomerang policy check DIR  validate policy files
boomerang replay ...        re-deliver records (dry run first; re-publish or rewind)
boomerang dlq list|show|redrive|purge   dead letters
boomerang saga show|list|retry|cancel|resume   one return's saga, steered by a person
boomerang lag               consumer lag per service and partition
boomerang audit             who replayed / redrove / purged / steered what, when and why
boomerang recon run --date D   reconcile a day with the payment providers' reports
boomerang finance sql "…"   a read-only query on the ledger (finance's role)
boomerang risk check F      validate a risk rule set (shape, features it reads)
boomerang risk backtest --rules F --from T --to T   a rule set replayed on the topics' history
boomerang review list|show|approve|deny   the reviewers' queue of held and reviewed returns
boomerang cases list|show|assign|close   support cases: tickets with an SLA, escalated when overdue
boomerang sellers show S    a seller's standing per market, why, and its rates beside its peers'
"""

from __future__ import annotations

import importlib
import json
import os
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
    "settlement": "services.settlement.app",
    "risk": "services.risk.app",
    "notifications": "services.notifications.app",
    "cases": "services.cases.app",
    "ops": "services.ops.app",
    "carrier": "services.tools.partners.carrier_server",
    "psp": "services.tools.partners.psp_server",
    "psp-b": "services.tools.partners.psp_server",
    "marketplace": "services.tools.partners.marketplace_server",
    "notify": "services.tools.partners.notify_server",
}


PARTNER_DOUBLES = frozenset({"carrier", "psp", "psp-b", "marketplace", "notify"})  # no Kafka


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Boomerang: returns, pickups, inspection, warehouse intake and refunds over Kafka."""
    _default_to_the_local_broker()


def _default_to_the_local_broker() -> None:
    """Without KAFKA_BOOTSTRAP_SERVERS, a checkout's commands use its local broker (a runtime
    build has no local broker: there the variable must be set)."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return
    try:
        from services.tools.local_kafka.broker import checkout_bootstrap
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("services.tools"):
            raise  # a dependency missing inside the tool is a real error
        return
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = checkout_bootstrap()


INSTANCE_PORT_STEP = 100  # instance K listens on its service's port + 100 × (K − 1)


@main.command()
@click.argument("service", type=click.Choice(sorted(SERVICES)))
@click.option(
    "--instance",
    type=click.IntRange(1, 99),
    help="Run as instance K of the service (one consumer group; K names it and, without "
    "--port, moves its port up by 100 × (K − 1)).",
)
@click.option("--port", type=click.IntRange(1, 65535), help="The HTTP port (exact).")
def run(service: str, instance: int | None, port: int | None) -> None:
    """Run one SERVICE in this process (Ctrl-C stops it). Several instances of a service
    share its partitions (docs/scaling.md)."""
    port_variable = f"{service.upper().replace('-', '_')}_PORT"
    if instance is not None:
        os.environ["BOOMERANG_INSTANCE_ID"] = str(instance)
        if port is None and (base := os.environ.get(port_variable)):
            port = int(base) + INSTANCE_PORT_STEP * (instance - 1)
        elif port is None and service not in PARTNER_DOUBLES:
            port = _default_port(service) + INSTANCE_PORT_STEP * (instance - 1)
    if port is not None:
        os.environ[port_variable] = str(port)
    try:
        module = importlib.import_module(SERVICES[service])
    except ModuleNotFoundError as exc:
        raise click.ClickException(
            f"service {service!r} is not available in this build ({exc})"
        ) from exc
    if service not in PARTNER_DOUBLES and not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        raise click.ClickException("KAFKA_BOOTSTRAP_SERVERS is not set (no local broker here)")
    sys.exit(module.main())


def _default_port(service: str) -> int:
    return int(importlib.import_module(SERVICES[service]).DEFAULT_PORT)


@main.group(invoke_without_command=True)
@click.option("--check", is_flag=True, help="Create nothing; exit 1 on missing topics or drift.")
@click.option(
    "--apply-settings",
    is_flag=True,
    help="Set drifted topic settings (retention, cleanup) to the declared ones.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def topics(ctx: click.Context, check: bool, apply_settings: bool, as_json: bool) -> None:
    """Create the declared topics that are missing and report drift (`topics migrate`:
    move them to another partition count)."""
    if ctx.invoked_subcommand is not None:
        return
    from services.eventing import topic_bootstrap

    flags = [("--check", check), ("--apply-settings", apply_settings), ("--json", as_json)]
    sys.exit(topic_bootstrap.main([flag for flag, chosen in flags if chosen]))


@topics.command("migrate")
@click.option(
    "--partitions",
    type=click.IntRange(1, 10_000),
    default=None,
    help="The new partition count (default: the declared one, 12 unless "
    "BOOMERANG_TOPIC_PARTITIONS says otherwise).",
)
@click.option(
    "--plan-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("boomerang-topics-migration.json"),
    show_default=True,
    help="Where the groups' offsets are noted before anything is deleted (a rerun resumes).",
)
@click.option(
    "--check",
    is_flag=True,
    help="Change nothing: say what would move and whether the deployment is drained.",
)
@click.option("--yes", is_flag=True, help="Do it (topics are deleted and made again).")
def topics_migrate(partitions: int | None, plan_file: Path, check: bool, yes: bool) -> None:
    """Move every stream, dead-letter and changelog topic to a new partition count, keys
    re-mapped, on a drained and stopped deployment (docs/scaling.md)."""
    import asyncio

    from services.eventing.settings import bootstrap_servers
    from services.eventing.topics import PARTITIONS
    from services.tools.oncall import topic_migration

    if not check and not yes:
        raise click.UsageError("say --check to look, or --yes to migrate")
    target = partitions or PARTITIONS
    try:
        report = asyncio.run(
            topic_migration.migrate(
                bootstrap_servers(), target, plan_file, progress=click.echo, check_only=check
            )
        )
    except topic_migration.MigrationRefused as exc:
        raise click.ClickException(str(exc)) from exc
    for problem in report.problems:
        click.echo(f"not drained: {problem.group} on {problem.topic}: {problem.detail}")
    click.echo(
        json.dumps(
            {
                "partitions": report.partitions,
                "migrated": report.migrated,
                "to_migrate": report.to_migrate,
                "already": len(report.already),
                "missing": report.missing,
                "not_drained": len(report.problems),
                "seconds": report.seconds,
            }
        )
    )
    sys.exit(1 if report.problems else 0)


@main.group()
def schemas() -> None:
    """The Avro event contract."""


@schemas.command("check")
def schemas_check() -> None:
    """Fail unless every schema is backward and forward compatible with its last release."""
    from services.eventing import schema_evolution

    sys.exit(schema_evolution.main(["check"]))


def _policy_dir(option: str | None) -> Path:
    from services.policy_files.loader import policy_dir

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
    from services.decisions.policy.explain import ExplainInputError, explain
    from services.decisions.policy.policy_rules import PolicyLookupError
    from services.policy_files.explain_request import parse_request
    from services.policy_files.loader import PolicyError, load_policy_set

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
    from services.policy_files.loader import PolicyError, load_policy_set

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


def _add_on_call_commands() -> None:
    from services.tools.oncall.oncall_commands import audit, dlq, lag, replay
    from services.tools.oncall.saga_commands import saga

    for command in (replay, dlq, saga, lag, audit):
        main.add_command(command)


_add_on_call_commands()


def _add_finance_commands() -> None:
    try:
        from services.settlement.finance_commands import finance, recon
    except ModuleNotFoundError as exc:  # a runtime build without settlement
        if not (exc.name or "").startswith("services.settlement"):
            raise
        return
    main.add_command(recon)
    main.add_command(finance)


_add_finance_commands()


def _add_risk_commands() -> None:
    from services.risk.review_commands import review
    from services.risk.risk_commands import risk
    from services.risk.seller_commands import sellers

    main.add_command(risk)
    main.add_command(review)
    main.add_command(sellers)


_add_risk_commands()


def _add_case_commands() -> None:
    from services.cases.case_commands import cases

    main.add_command(cases)


_add_case_commands()


if __name__ == "__main__":
    main()
