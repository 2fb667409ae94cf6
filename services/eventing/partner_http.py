"""The HTTP client every partner adapter (carrier, PSPs, marketplace) calls through: one
pooled aiohttp session per partner, created in the running event loop on first use.

aiohttp, not httpx, measured back to back (`python -m tests.bench.partner_client_cost`, see
docs/performance.md): a JSON POST to a local server cost 1.7 CPU-ms with httpx 0.28 (3.3
with 20 calls in flight; without `sniffio` installed httpcore also retries a failed import
on every request) and 0.22–0.28 with aiohttp 3.14, which is what lets a process hold a
hundred partner calls in flight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

POOL_SIZE = 20  # connections per partner, all kept alive


class PartnerUnreachable(Exception):
    """The request got no answer: a timeout, a reset, a refused connection."""


class PartnerConnectFailed(PartnerUnreachable):
    """No connection could be made: the request never reached the partner."""


@dataclass(frozen=True)
class PartnerResponse:
    status_code: int
    content: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return orjson.loads(self.content)


class PartnerHttp:
    def __init__(self, base_url: str, timeout_s: float = 5.0, connect_timeout_s: float = 2.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, connect=connect_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _opened(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=POOL_SIZE, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self.timeout)
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> PartnerResponse:
        sent = dict(headers or {})
        body = None
        if json is not None:
            body = orjson.dumps(json)
            sent["Content-Type"] = "application/json"
        try:
            async with self._opened().request(
                method, self.base_url + path, data=body, headers=sent
            ) as response:
                content = await response.read()
                return PartnerResponse(response.status, content, dict(response.headers))
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise PartnerConnectFailed(f"{type(exc).__name__}: {exc}") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise PartnerUnreachable(f"{type(exc).__name__}: {exc}") from exc

    async def post(self, path: str, json: Any = None, headers: Any = None) -> PartnerResponse:
        return await self.request("POST", path, json=json, headers=headers)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> PartnerHttp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
