"""How on-call commands print: rich tables and progress bars for people (progress on
stderr, so `--json` keeps stdout to one JSON document)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import click


def stderr_console() -> Any:
    """A rich console on stderr."""
    from rich.console import Console

    return Console(stderr=True)


def stdout_console() -> Any:
    """A rich console on stdout."""
    from rich.console import Console

    return Console()


def report_console(as_json: bool) -> Any:
    """Where a command talks to people: stderr under `--json` (stdout keeps the JSON)."""
    return stderr_console() if as_json else stdout_console()


@contextlib.contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[[], None]]:
    """A rich progress bar on stderr; yields `advance()`."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
    columns += [MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=stderr_console(), transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)


def emit(report: dict[str, Any], as_json: bool, render: Callable[[dict[str, Any]], None]) -> None:
    """Print `report` as one JSON document under `--json`, else `render` it for people."""
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        render(report)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Any:
    """A bold title over a table of `columns` and `rows` (cells shown as text)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    shown = Table()
    for column in columns:
        shown.add_column(column)
    for row in rows:
        shown.add_row(*(str(cell) for cell in row))
    return Group(Text(title, style="bold"), shown)


def print_effects(console: Any, effects: dict[str, dict[str, int]], target: str) -> None:
    """What each consumer of `target` would do with the records (replay and redrive plans)."""
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
