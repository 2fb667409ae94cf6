"""The `boomerang` command: one entry point for people, docker-compose and the demo.

boomerang run <service>     start one service process (the command docker-compose uses)
boomerang topics [--check]  create missing topics / report drift
boomerang schemas check     the schema evolution gate
"""

from __future__ import annotations

import importlib
import sys

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


if __name__ == "__main__":
    main()
