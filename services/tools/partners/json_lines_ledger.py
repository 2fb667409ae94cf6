"""The file a partner double keeps its records in across restarts: append-only JSON lines.

Each line is one JSON object with an `op` (what happened: a record's new state, a reset, ...)
and `at` (when, ms). At start the double replays every line, oldest first, to rebuild its
state. A crash can leave a torn last line: it is skipped, and new lines start on a fresh line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from services.eventing.log_setup import get_logger
from services.tools.partners.http_support import now_ms

log = get_logger(__name__)


class JsonLinesLedger:
    """The double's ledger file at `path`; with no path nothing is kept (replay, append and
    close do nothing)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def replay(self, apply: Callable[[dict[str, Any]], None]) -> None:
        """`apply` every line's entry, oldest first. A line that is not JSON, or that `apply`
        refuses (ValueError, KeyError, TypeError), is skipped with a warning."""
        if self.path is None or not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as lines:
            for line_no, line in enumerate(lines, start=1):
                try:
                    apply(json.loads(line))
                except (ValueError, KeyError, TypeError) as exc:
                    # a crash can leave a torn last line; everything before it still counts
                    log.warning("ledger line skipped", line_no=line_no, error=str(exc))

    def open(self) -> None:
        """Open for appending (creating the folder if need be), after a torn line if any."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn_last_line = False
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open("rb") as existing:
                existing.seek(-1, os.SEEK_END)
                torn_last_line = existing.read(1) != b"\n"
        self._file = self.path.open("a", encoding="utf-8")
        if torn_last_line:  # start our lines on a fresh line
            self._file.write("\n")

    def append(self, entry: dict[str, Any]) -> None:
        """Write `entry` with the time (`at`) as one line, flushed at once."""
        if self.path is None:
            return
        assert self._file is not None, "the ledger file is not open"
        self._file.write(json.dumps({**entry, "at": now_ms()}, sort_keys=True) + "\n")
        self._file.flush()

    def append_many(self, entries: list[dict[str, Any]]) -> None:
        """`append` for several entries, flushed once (a batch's)."""
        if self.path is None or not entries:
            return
        assert self._file is not None, "the ledger file is not open"
        at = now_ms()
        self._file.write(
            "".join(json.dumps({**entry, "at": at}, sort_keys=True) + "\n" for entry in entries)
        )
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
