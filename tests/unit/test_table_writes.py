"""Changelog writes of a Faust table are handed to the consume loop while it collects them,
so an input's offset is committed only once its table changes are on the broker too."""

from __future__ import annotations

import asyncio

import faust

from services.eventing.table_writes import TrackedTable, collecting


def table() -> faust.Table:
    app = faust.App("table-writes-test", broker="kafka://127.0.0.1:1", Table=TrackedTable)
    return app.Table("sagas", default=None)  # nothing connects before the app starts


def test_the_apps_tables_are_tracked():
    assert isinstance(table(), TrackedTable)


def test_writes_made_while_collecting_are_handed_over_and_others_are_not():
    async def scenario() -> tuple[int, int]:
        sagas = table()
        sagas.send_changelog(0, "before", "x")
        with collecting() as writes:
            sagas.send_changelog(0, "RMA-1", {"status": "INTAKE_PENDING"})
            sagas.send_changelog(1, "RMA-2", None)
        sagas.send_changelog(0, "after", "x")
        return len(writes), sum(isinstance(w, asyncio.Future) for w in writes)

    assert asyncio.run(scenario()) == (2, 2)


def test_each_task_collects_its_own_writes():
    async def scenario() -> list[int]:
        sagas = table()

        async def handle(count: int) -> int:
            with collecting() as writes:
                for n in range(count):
                    sagas.send_changelog(0, f"k{n}", n)
                    await asyncio.sleep(0)  # the other task writes in between
            return len(writes)

        return list(await asyncio.gather(handle(2), handle(3)))

    assert asyncio.run(scenario()) == [2, 3]
