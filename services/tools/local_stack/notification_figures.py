"""What the buyers and sellers of a run were told, read from the notification-provider
double: messages per return, duplicates, and the ended returns whose buyer was not told
that their return closed (waited for up to `wait_s`: the notifier runs behind the saga)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import httpx

CONCURRENCY = 16


async def _messages(client: httpx.AsyncClient, url: str, return_id: str) -> list[dict]:
    answer = await client.get(f"{url}/messages", params={"return_id": return_id})
    answer.raise_for_status()
    return answer.json()["messages"]


async def _told(url: str, return_ids: list[str]) -> dict[str, list[dict]]:
    limit = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(timeout=10.0) as client:

        async def one(return_id: str) -> tuple[str, list[dict]]:
            async with limit:
                return return_id, await _messages(client, url, return_id)

        return dict(await asyncio.gather(*(one(r) for r in return_ids)))


def notification_figures(
    notify_url: str, ended: Iterable[str], wait_s: float = 30.0
) -> dict[str, Any]:
    """`notifications_sent` (this run's messages), `notifications_by_milestone`,
    `notification_duplicates` (the provider's count), `notifications_missing` (ended
    returns whose buyer was never told it closed)."""
    return_ids = sorted(set(ended))
    deadline = time.monotonic() + wait_s
    while True:
        told = asyncio.run(_told(notify_url, return_ids))
        missing = [
            r
            for r, messages in told.items()
            if not any(
                m["milestone"] in ("closed", "rejected") and m["recipient_role"] == "buyer"
                for m in messages
            )
        ]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    stats = httpx.get(f"{notify_url}/messages/stats", timeout=10.0).json()
    milestones = Counter(m["milestone"] for messages in told.values() for m in messages)
    return {
        "notifications_sent": sum(milestones.values()),
        "notifications_by_milestone": dict(sorted(milestones.items())),
        "notification_duplicates": stats["duplicates"],
        "notifications_missing": len(missing),
    }
