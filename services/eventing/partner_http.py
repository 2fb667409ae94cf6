"""The HTTP client every partner adapter (carrier, PSPs, marketplace) calls through: one
pooled aiohttp session per partner, created in the running event loop on first use.

aiohttp, not httpx, measured back to back (`python -m tests.bench.partner_client_cost`, see
docs/performance.md): a JSON POST to a local server cost 1.7 CPU-ms with httpx 0.28 (3.3
with 20 calls in flight; without `sniffio` installed httpcore also retries a failed import
on every request) and 0.22–0.28 with aiohttp 3.14, which is what lets a process hold a
hundred partner calls in flight.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from prometheus_client import Histogram

POOL_SIZE = 20  # connections per partner, all kept alive

PARTNER_CALL_SECONDS = Histogram(
    "boomerang_partner_call_duration_seconds",
    "Partner HTTP calls (carrier, payment providers, marketplace), by partner, operation "
    "(method and path, ids replaced by {id}) and outcome (2xx, 4xx, 5xx, timeout, "
    "connect_failed, unreachable)",
    ["partner", "operation", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
_ID_SEGMENT = re.compile(r"[^/]*\d[^/]*")  # a path segment with a digit is an id


def operation_of(method: str, path: str) -> str:
    """A call's bounded label: "POST /bookings/{id}/cancel" for "/bookings/BK-42/cancel"."""
    return f"{method} {_ID_SEGMENT.sub('{id}', path.split('?', 1)[0])}"


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
    def __init__(
        self,
        base_url: str,
        timeout_s: float = 5.0,
        connect_timeout_s: float = 2.0,
        partner: str = "partner",
    ):
        self.base_url = base_url.rstrip("/")
        self.partner = partner  # the metrics' label: carrier, psp, psp-b, marketplace
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
        started = time.perf_counter()
        outcome = "unreachable"
        try:
            async with self._opened().request(
                method, self.base_url + path, data=body, headers=sent
            ) as response:
                content = await response.read()
                outcome = f"{response.status // 100}xx"
                return PartnerResponse(response.status, content, dict(response.headers))
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            outcome = "connect_failed"
            raise PartnerConnectFailed(f"{type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            outcome = "timeout"
            raise PartnerUnreachable(f"{type(exc).__name__}: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise PartnerUnreachable(f"{type(exc).__name__}: {exc}") from exc
        finally:
            PARTNER_CALL_SECONDS.labels(self.partner, operation_of(method, path), outcome).observe(
                time.perf_counter() - started
            )

    async def post(self, path: str, json: Any = None, headers: Any = None) -> PartnerResponse:
        return await self.request("POST", path, json=json, headers=headers)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> PartnerHttp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
