"""One asyncio lock per key, for HTTP handlers that check and then publish: requests for the
same return (or scan) wait for each other, requests for different ones do not.

A lock exists only while someone holds or waits for it, so the mapping stays as small as
the requests in flight. Several keys are taken in sorted order, so two holders never wait
for each other in a cycle.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class KeyedLocks:
    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # key -> (lock, users)

    def __len__(self) -> int:
        return len(self._locks)

    @asynccontextmanager
    async def holding(self, *keys: str) -> AsyncIterator[None]:
        ordered = sorted(set(keys))
        locks = [self._use(key) for key in ordered]
        held: list[asyncio.Lock] = []
        try:
            for lock in locks:
                await lock.acquire()
                held.append(lock)
            yield
        finally:
            for lock in reversed(held):
                lock.release()
            for key in ordered:
                self._leave(key)

    def _use(self, key: str) -> asyncio.Lock:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        return lock

    def _leave(self, key: str) -> None:
        lock, users = self._locks[key]
        if users == 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)
