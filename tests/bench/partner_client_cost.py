"""CPU per partner call, httpx vs aiohttp, back to back:
`python -m tests.bench.partner_client_cost`.

A local aiohttp server (its own process) answers a JSON POST as the carrier double does;
this process sends CALLS requests with each client at 1, 10 and 20 in flight over a pool of
20 connections and prints its own CPU per call. Never part of `make test`.
"""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx

from services.eventing.partner_http import PartnerHttp
from services.tools.local_stack.stack import free_port

CALLS = 3000
BODY = {"return_id": "RMA-1", "buyer_id": "B-1", "pickup_address": "x", "parcel_count": 2}
SERVER = """
import sys
from aiohttp import web
async def answer(request):
    await request.read()
    return web.json_response({"booking_id": "BK-1", "tracking_number": "T-1"})
app = web.Application()
app.router.add_post("/pickups", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(call: Callable[[], Awaitable[None]], in_flight: int) -> tuple[float, float]:
    await call()  # the connection is open before the clock starts
    slots = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with slots:
            await call()

    started, wall = cpu_s(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(CALLS)))
    return (cpu_s() - started) * 1000 / CALLS, CALLS / (time.perf_counter() - wall)


def report(client: str, in_flight: int, ms: float, rate: float) -> None:
    print(f"{client:14} {in_flight:3} in flight: {ms:.3f} CPU-ms per call, {rate:6.0f} calls/s")


async def main(port: int) -> None:
    url = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
    async with httpx.AsyncClient(base_url=url, limits=limits) as client:

        async def with_httpx() -> None:
            (await client.post("/pickups", json=BODY)).json()

        for in_flight in (1, 10, 20):
            ms, rate = await measure(with_httpx, in_flight)
            report(f"httpx {httpx.__version__}", in_flight, ms, rate)
    async with PartnerHttp(url) as partner:

        async def with_aiohttp() -> None:
            (await partner.post("/pickups", json=BODY)).json()

        for in_flight in (1, 10, 20):
            ms, rate = await measure(with_aiohttp, in_flight)
            report(f"aiohttp {aiohttp.__version__}", in_flight, ms, rate)


if __name__ == "__main__":
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    try:
        time.sleep(1.5)
        asyncio.run(main(port))
    finally:
        server.terminate()
        server.wait()
