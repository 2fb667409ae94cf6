"""The safeguards every writing on-call command shares.

A command that writes (replay, dlq redrive/purge, saga retry/cancel/resume) is a dry run
unless given `--execute`, needs `--reason` to execute, stops between two records on Ctrl-C
(exit code 130, with the command that resumes) and records an audit event.
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import click

INTERRUPTED_EXIT = 130


def require_reason(execute: bool, reason: str | None, goes_into: str) -> None:
    """Refuse `--execute` without a non-blank `--reason` (`goes_into`: where it is kept)."""
    if execute and not (reason and reason.strip()):
        raise click.UsageError(f"--execute needs --reason (it goes into {goes_into})")


def stop_on_ctrl_c() -> asyncio.Event:
    """An event set by Ctrl-C (SIGINT/SIGTERM) so a write stops between two records."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


def end_dry_run(report: dict[str, Any], as_json: bool, console: Any, hint: str) -> None:
    """Close a dry run whose plan was shown: the report as JSON, or `hint` (how to execute)."""
    report["dry_run"] = True
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        console.print(hint)
