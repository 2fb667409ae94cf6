"""What the loop left behind, read back over HTTP: the providers' refunds, the sagas' views.

The demo and the chaos run check their figures against these: the payment provider
doubles' ledgers (where money really moved) and the coordinator's view of each return.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Container
from typing import Any

import httpx

MONEY_MOVED = ("succeeded", "pending")  # a provider's refund statuses that move money
VIEW_TRIES = 20  # a saga view answered 503 (its partition moving) is asked again this often


async def psp_ledger(*psp_urls: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every provider's refunds (a card refund may have failed over to the second one)."""
    refunds: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=timeout) as http:
        for url in psp_urls:
            response = await http.get(f"{url}/refunds")
            response.raise_for_status()
            refunds += response.json()["refunds"]
    return refunds


def refunds_paid(ledger: list[dict[str, Any]], return_ids: Container[str]) -> list[dict[str, Any]]:
    """The ledger's refunds for `return_ids` that moved money (succeeded, or pending)."""
    return [r for r in ledger if r["return_id"] in return_ids and r["status"] in MONEY_MOVED]


def money_moved(ledger: list[dict[str, Any]], return_ids: Container[str]) -> Counter[str]:
    """How many refunds moved money, per return id (more than one is a double refund)."""
    return Counter(r["return_id"] for r in refunds_paid(ledger, return_ids))


async def saga_views(
    coordinator_url: str, return_ids: list[str], concurrency: int = 1
) -> dict[str, dict[str, Any]]:
    """The coordinator's view of each return (`GET /returns/{id}`) it knows, `concurrency`
    requests at a time."""
    views: dict[str, dict[str, Any]] = {}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as http:
        semaphore = asyncio.Semaphore(concurrency)

        async def fetch(return_id: str) -> None:
            async with semaphore:
                for _ in range(VIEW_TRIES):  # a 503 (partitions moving) is asked again
                    try:
                        response = await http.get(f"{coordinator_url}/returns/{return_id}")
                    except httpx.HTTPError:
                        await asyncio.sleep(1.0)
                        continue
                    if response.status_code == 200:
                        views[return_id] = response.json()
                    if response.status_code != 503:
                        return
                    await asyncio.sleep(float(response.headers.get("Retry-After") or 1))

        await asyncio.gather(*(fetch(r) for r in return_ids))
    return views
