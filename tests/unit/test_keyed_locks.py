"""KeyedLocks (services/eventing/keyed_locks.py): holders of one key wait for each other,
of different keys do not; a lock lives only while it is held or waited for."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.eventing.keyed_locks import KeyedLocks


def test_one_key_is_held_by_one_at_a_time_and_other_keys_are_not_held_up():
    async def scenario() -> None:
        locks = KeyedLocks()
        order: list[str] = []
        release_first = asyncio.Event()

        async def hold(name: str, *keys: str, until: asyncio.Event | None = None) -> None:
            async with locks.holding(*keys):
                order.append(f"{name} in")
                if until is not None:
                    await until.wait()
                order.append(f"{name} out")

        first = asyncio.create_task(hold("first", "r-1", until=release_first))
        await asyncio.sleep(0)
        same = asyncio.create_task(hold("same", "r-1"))
        other = asyncio.create_task(hold("other", "r-2"))
        await asyncio.sleep(0.01)
        assert order == ["first in", "other in", "other out"]  # r-2 did not wait for r-1
        release_first.set()
        await asyncio.gather(first, same, other)
        assert order[3:] == ["first out", "same in", "same out"]
        assert len(locks) == 0

    asyncio.run(scenario())


def test_a_holder_cancelled_while_waiting_leaves_nothing_behind():
    async def scenario() -> None:
        locks = KeyedLocks()
        entered = asyncio.Event()

        async def hold_forever() -> None:
            async with locks.holding("r-1"):
                entered.set()
                await asyncio.sleep(3600)

        holder = asyncio.create_task(hold_forever())
        await entered.wait()

        async def wait_for_it() -> None:
            async with locks.holding("r-1", "s-1"):
                pytest.fail("never held: r-1 is taken")

        waiter = asyncio.create_task(wait_for_it())
        await asyncio.sleep(0.01)
        waiter.cancel()
        holder.cancel()
        await asyncio.gather(holder, waiter, return_exceptions=True)
        assert len(locks) == 0

    asyncio.run(scenario())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from("abcd"), min_size=1, max_size=3), max_size=12))
def test_holders_of_overlapping_keys_never_overlap_and_never_deadlock(requests):
    async def scenario() -> None:
        locks = KeyedLocks()
        holding: set[str] = set()

        async def hold(keys: list[str]) -> None:
            async with locks.holding(*keys):
                assert not holding & set(keys)
                holding.update(keys)
                await asyncio.sleep(0)
                holding.difference_update(keys)

        await asyncio.wait_for(asyncio.gather(*(hold(keys) for keys in requests)), 5)
        assert len(locks) == 0

    asyncio.run(scenario())
