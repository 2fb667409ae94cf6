"""The PSP and marketplace adapters against a real HTTP server that answers with error pages
(a router's 404, a proxy's 409 in HTML): a refusal naming the status, never a parsing crash
that would park the command as an unhandled error."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from services.refund.marketplace_client import (
    MarketplaceClient,
    MarketplaceRefused,
    ReplacementOrder,
    marketplace_http,
)
from services.refund.psp_client import PspClient, PspRefused, RefundOrder, psp_http


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def serving(status: int, body: str, scenario) -> None:
    async def page(_request: web.Request) -> web.Response:
        return web.Response(status=status, text=body, content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await scenario(f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


ORDER = RefundOrder("RMA-1-refund-1", "RMA-1", 1000, "EUR", "CARD")


def test_a_psp_error_page_is_a_refusal_with_its_status():
    async def scenario(url: str) -> None:
        async with psp_http(url) as http:
            with pytest.raises(PspRefused, match="HTTP 404"):
                await PspClient(http).refund(ORDER)

    asyncio.run(serving(404, "<h1>Not Found</h1>", scenario))


def test_a_void_answered_409_by_an_error_page_reads_as_already_settled():
    async def scenario(url: str) -> None:
        async with psp_http(url) as http:
            assert await PspClient(http).void("RF-1") == "already_settled"

    asyncio.run(serving(409, "<h1>Conflict</h1>", scenario))


def test_a_marketplace_error_page_is_a_refusal_with_its_status():
    async def scenario(url: str) -> None:
        async with marketplace_http(url) as http:
            with pytest.raises(MarketplaceRefused, match="HTTP 404"):
                order = ReplacementOrder("RMA-1-exchange", "RMA-1", "ORD-1", "B-1", "SKU-1", 1, "")
                await MarketplaceClient(http).place_replacement(order)

    asyncio.run(serving(404, "<h1>Not Found</h1>", scenario))
