"""Table writes the consume loop waits for before it commits an input's offset.

A Faust table writes each change to its changelog through Faust's own producer, later and
on its own. The consume loop commits an input offset once the writes of that input are on
the broker; without the changelog writes among them, a process killed in between lost the
table change while its input was committed (seen in a chaos run: a saga's inspection
applied, its changelog write lost, the InspectionRecorded never read again). `TrackedTable`
hands the future of every changelog write made while `collecting()` is active to the list
it gives, so the loop can wait for them as for its own writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import faust

_COLLECTED: ContextVar[list[asyncio.Future] | None] = ContextVar("table_writes", default=None)


class TrackedTable(faust.Table):
    """A Faust table whose changelog writes can be waited for (see `collecting`)."""

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        future = super().send_changelog(*args, **kwargs)
        collected = _COLLECTED.get()
        if collected is not None:
            collected.append(future)
        return future


@contextmanager
def collecting() -> Iterator[list[asyncio.Future]]:
    """The futures of the changelog writes made in this context (this task) until it ends."""
    writes: list[asyncio.Future] = []
    token = _COLLECTED.set(writes)
    try:
        yield writes
    finally:
        _COLLECTED.reset(token)
