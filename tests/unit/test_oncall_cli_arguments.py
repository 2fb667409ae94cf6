"""The on-call commands refuse bad arguments before touching Kafka: a clear message and exit
code 2; every command and subcommand has --help."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from services.cli import main

RUNNER = CliRunner()


def all_commands(group: click.Group = main, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from all_commands(command, (*prefix, name))


@pytest.mark.parametrize("path", list(all_commands()), ids=" ".join)
def test_every_command_has_help(path):
    answer = RUNNER.invoke(main, [*path, "--help"])
    assert answer.exit_code == 0, answer.output
    assert "Usage:" in answer.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["replay"], "Missing option '--topic'"),
        (["replay", "--topic", "nope"], "is not one of"),
        (["replay", "--topic", "boomerang.refund.commands", "--execute"], "needs --reason"),
        (
            ["replay", "--topic", "boomerang.refund.commands", "--execute", "--dry-run"],
            "contradict",
        ),
        (
            ["replay", "--topic", "boomerang.refund.commands", "--event-type", "ReturnRequested"],
            "never travels on boomerang.refund.commands",
        ),
        (
            ["replay", "--topic", "boomerang.refund.commands", "--from-time", "2026-11-24T09:00"],
            "needs a UTC offset",
        ),
        (
            [
                "replay",
                "--topic",
                "boomerang.refund.commands",
                "--from-offset",
                "9",
                "--to-offset",
                "9",
            ],
            "--to-offset must be after --from-offset",
        ),
        (
            ["replay", "--topic", "boomerang.refund.commands", "--group", "pickup"],
            "no service 'pickup' consumes boomerang.refund.commands",
        ),
        (
            [
                "replay",
                "--topic",
                "boomerang.refund.commands",
                "--group",
                "refund",
                "--return-id",
                "RMA-1",
            ],
            "cannot narrow a rewind",
        ),
        (["replay", "--topic", "boomerang.refund.commands", "--start-at", "0-1"], "PARTITION"),
        (["replay", "--topic", "boomerang.refund.commands", "--rate", "0"], "--rate"),
        (
            ["replay", "--topic", "boomerang.refund.commands", "--to-topic", "elsewhere"],
            "not a topic of the catalogue",
        ),
        (["dlq", "redrive"], "say which letters"),
        (["dlq", "redrive", "--all", "--execute"], "needs --reason"),
        (["dlq", "redrive", "--letter", "x/1"], "DLQ_TOPIC/PARTITION/OFFSET"),
        (["dlq", "purge"], "Missing option '--topic'"),
        (["dlq", "purge", "--topic", "nope"], "not a topic of the catalogue"),
        (
            ["dlq", "purge", "--topic", "boomerang.refund.commands", "--older-than", "soon"],
            "is not a duration",
        ),
        (["saga", "resume", "RMA-1"], "Missing option '--decision'"),
        (["saga", "resume", "RMA-1", "--decision", "maybe"], "is not one of"),
        (["saga", "list", "--state", "LOST"], "is not one of"),
        (["saga", "list", "--stuck-for", "a while"], "is not a duration"),
        (["saga", "cancel"], "Missing argument 'RETURN_ID'"),
        (["lag", "--service", "billing"], "consumes nothing"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_arguments_exit_2_with_a_clear_message(args, says):
    answer = RUNNER.invoke(main, args)
    assert answer.exit_code == 2, answer.output
    assert says in answer.output
