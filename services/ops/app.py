"""Composition root of the ops service (`boomerang run ops`, port 8090): the operators'
dashboard at `GET /dashboard` (docs/metrics.md).

It keeps no state of its own and reads, when asked:
- every service's /metrics (OPS_METRICS_SOURCES: {name: url}; the KPIs are read back from
  their samples, decisions/after_sales/kpi_readings.py),
- the coordinator's view of one return (its timeline) and the risk service's review queue,
- Kafka's offsets: each dead-letter topic's depth and each consumer group's lag.

Operators sign in with their token (OPS_OPERATOR_TOKENS) and get a signed session cookie;
every route but the sign-in page, the static files, /health and /metrics wants one.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiokafka.errors import KafkaError

from services.decisions.after_sales.kpi_readings import kpi_figures
from services.decisions.after_sales.return_timeline import return_timeline
from services.engine.web import (
    add_metrics_page,
    add_openapi_page,
    json_answer,
    new_web_app,
    serving,
)
from services.eventing.envelope import now_ms
from services.eventing.log_setup import configure_logging, get_logger
from services.eventing.named_tokens import parse_named_tokens
from services.eventing.request_fields import ApiError
from services.eventing.settings import bootstrap_servers
from services.ops.dashboard_page import dashboard_page, sign_in_page
from services.ops.kafka_readings import dead_letter_depths, lag_by_service
from services.ops.metric_scrape import scrape
from services.ops.operator_sessions import COOKIE, OperatorSessions

SERVICE = "ops"
DEFAULT_PORT = 8090
STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {
    "dashboard.js": "application/javascript",
    "dashboard.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
KAFKA_READINGS_KEPT_S = 10.0  # lag and dead-letter depths are read at most this often
RETURN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
log = get_logger(__name__)


@dataclass(frozen=True)
class OpsSettings:
    bootstrap: str
    host: str
    port: int
    metrics_sources: dict[str, str]  # name → its /metrics URL
    coordinator_url: str
    risk_url: str
    risk_token: str  # a reviewer's token, used to read the queue only
    sessions: OperatorSessions

    @classmethod
    def from_env(cls) -> OpsSettings:
        sources = orjson.loads(os.environ.get("OPS_METRICS_SOURCES") or "{}")
        if not isinstance(sources, dict):
            raise ValueError("OPS_METRICS_SOURCES: a JSON object {name: metrics URL}")
        secret = os.environ.get("OPS_SESSION_SECRET", "").encode() or secrets.token_bytes(32)
        hours = float(os.environ.get("OPS_SESSION_HOURS") or 8)
        return cls(
            bootstrap=bootstrap_servers(),
            host=os.environ.get("BOOMERANG_BIND_HOST") or "127.0.0.1",
            port=int(os.environ.get("OPS_PORT") or DEFAULT_PORT),
            metrics_sources={str(k): str(v) for k, v in sources.items()},
            coordinator_url=(os.environ.get("OPS_COORDINATOR_URL") or "").rstrip("/"),
            risk_url=(os.environ.get("OPS_RISK_URL") or "").rstrip("/"),
            risk_token=os.environ.get("OPS_RISK_TOKEN") or "",
            sessions=OperatorSessions(
                parse_named_tokens(os.environ.get("OPS_OPERATOR_TOKENS", ""), "operator"),
                secret,
                int(hours * 3600 * 1000),
            ),
        )


class KeptReading:
    """An expensive reading done at most once per `kept_s`, one at a time."""

    def __init__(self, read: Callable[[], Awaitable[Any]], kept_s: float) -> None:
        self.read, self.kept_s = read, kept_s
        self.value: Any = None
        self.read_at = 0.0
        self.lock = asyncio.Lock()

    async def get(self) -> Any:
        async with self.lock:
            if self.value is None or time.monotonic() - self.read_at >= self.kept_s:
                self.value = await self.read()
                self.read_at = time.monotonic()
            return self.value


class OpsService:
    def __init__(self, settings: OpsSettings) -> None:
        self.settings = settings
        self.http: aiohttp.ClientSession | None = None
        self.dead_letters = KeptReading(
            lambda: dead_letter_depths(settings.bootstrap), KAFKA_READINGS_KEPT_S
        )
        self.lag = KeptReading(
            lambda: lag_by_service(settings.bootstrap, now_ms()), KAFKA_READINGS_KEPT_S
        )

    def client(self) -> aiohttp.ClientSession:
        if self.http is None or self.http.closed:
            self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0))
        return self.http

    # -- signing in -----------------------------------------------------------------------

    def operator(self, request: web.Request) -> str | None:
        return self.settings.sessions.operator_of(
            request.cookies.get(COOKIE), request.headers.get("Authorization"), now_ms()
        )

    def signed_in(self, request: web.Request) -> str:
        operator = self.operator(request)
        if operator is None:
            raise ApiError(401, "unauthenticated", "sign in at /dashboard (or send a Bearer token)")
        return operator

    async def page(self, request: web.Request) -> web.Response:
        operator = self.operator(request)
        return_id = request.query.get("return_id", "")
        if return_id and not RETURN_ID.fullmatch(return_id):
            return_id = ""
        text = sign_in_page() if operator is None else dashboard_page(operator, return_id)
        return web.Response(text=text, content_type="text/html", headers=PAGE_HEADERS)

    async def sign_in(self, request: web.Request) -> web.Response:
        """POST /dashboard/sign-in: the HTML form's `token=…` (urlencoded only)."""
        if request.content_type != "application/x-www-form-urlencoded":
            raise ApiError(415, "unsupported_media_type", "send the form urlencoded: token=…")
        try:
            form = await request.post()
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "unreadable_form", f"the form could not be read: {exc}") from exc
        token = form.get("token", "")
        token = token if isinstance(token, str) else ""
        operator = self.settings.sessions.holder_of_token(token) if token else None
        if operator is None:
            log.info("operator sign-in refused")
            return web.Response(
                text=sign_in_page("That token is not an operator's."),
                status=401,
                content_type="text/html",
                headers=PAGE_HEADERS,
            )
        log.info("operator signed in", operator=operator)
        response = web.Response(status=303, headers={**PAGE_HEADERS, "Location": "/dashboard"})
        response.set_cookie(
            COOKIE,
            self.settings.sessions.cookie_for(operator, now_ms()),
            max_age=self.settings.sessions.lifetime_ms // 1000,
            path="/dashboard",
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
        return response

    async def sign_out(self, request: web.Request) -> web.Response:
        response = web.Response(status=303, headers={**PAGE_HEADERS, "Location": "/dashboard"})
        response.del_cookie(COOKIE, path="/dashboard")
        return response

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise ApiError(404, "not_found", f"no static file {name!r}")
        return web.Response(
            body=(STATIC / name).read_bytes(),
            content_type=STATIC_FILES[name],
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    # -- figures --------------------------------------------------------------------------

    async def kpis(self, request: web.Request) -> web.Response:
        self.signed_in(request)
        found = await scrape(self.client(), self.settings.metrics_sources)
        figures = kpi_figures(found.samples)
        return _json({**figures, "sources": found.sources, "scraped_at_ms": now_ms()})

    async def timeline(self, request: web.Request) -> web.Response:
        self.signed_in(request)
        return_id = request.match_info["return_id"]
        if not RETURN_ID.fullmatch(return_id):
            raise ApiError(400, "invalid_return_id", "a return id is letters, digits and ._:-")
        view = await self._upstream(
            f"{self.settings.coordinator_url}/returns/{return_id}", {}, "coordinator"
        )
        if view is None:
            raise ApiError(404, "unknown_return", f"the coordinator knows no return {return_id}")
        return _json(return_timeline(view))

    async def reviews(self, request: web.Request) -> web.Response:
        self.signed_in(request)
        headers = {"Authorization": f"Bearer {self.settings.risk_token}"}
        listing = await self._upstream(f"{self.settings.risk_url}/reviews", headers, "risk")
        cases = [
            {
                "return_id": case.get("return_id"),
                "case_id": case.get("case_id"),
                "status": case.get("status"),
                "outcome": case.get("outcome"),
                "score": case.get("score"),
                "rules": [
                    r.get("rule_id", r) if isinstance(r, dict) else r
                    for r in case.get("rules") or ()
                ],
                "review_deadline_at": case.get("review_deadline_at"),
            }
            for case in (listing or {}).get("cases", [])
        ]
        return _json({"cases": cases})

    async def dead_letter_topics(self, request: web.Request) -> web.Response:
        self.signed_in(request)
        depths = await self._kafka(self.dead_letters)
        return _json({"topics": depths, "total": sum(depths.values())})

    async def consumer_lag(self, request: web.Request) -> web.Response:
        self.signed_in(request)
        groups = await self._kafka(self.lag)
        return _json({"groups": groups, "total_lag": sum(g["lag"] for g in groups)})

    async def _kafka(self, reading: KeptReading) -> Any:
        try:
            return await reading.get()
        except (KafkaError, OSError) as exc:
            log.warning("kafka not readable", error=repr(exc))
            raise ApiError(503, "kafka_unavailable", f"Kafka could not be read: {exc!r}") from exc

    async def _upstream(self, url: str, headers: dict[str, str], name: str) -> Any:
        """The JSON at `url`; None for a 404; ApiError(503) when `name` does not answer."""
        try:
            async with self.client().get(url, headers=headers) as response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    raise ApiError(503, "upstream_unavailable", f"{name}: HTTP {response.status}")
                return orjson.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            raise ApiError(503, "upstream_unavailable", f"{name}: {exc!r}"[:300]) from exc

    async def health(self, _request: web.Request) -> web.Response:
        """200 once operators can sign in and the figures have sources, else 503."""
        ready = bool(self.settings.sessions.tokens) and bool(self.settings.metrics_sources)
        body = {
            "service": SERVICE,
            "ready": ready,
            "metrics_sources": sorted(self.settings.metrics_sources),
            "operators": len(self.settings.sessions.tokens),
        }
        return _json(body, 200 if ready else 503)


def _json(body: Any, status: int = 200) -> web.Response:
    return json_answer(body, status, {"Cache-Control": "no-store"})


@web.middleware
async def _refusals(request: web.Request, handler: Any) -> web.StreamResponse:
    """A refusal is JSON with a 4xx (or a 503 for a part of the system that does not
    answer); aiohttp's own (404, 405, a body too large) too."""
    try:
        return await handler(request)
    except ApiError as exc:
        return _json(exc.body(), exc.status)
    except web.HTTPException as exc:
        refused = _json({"error": "http_error", "detail": exc.reason}, exc.status)
        if "Allow" in exc.headers:  # a 405 says which methods the path takes (RFC 9110)
            refused.headers["Allow"] = exc.headers["Allow"]
        return refused


def build_app(service: OpsService) -> web.Application:
    app = new_web_app(_refusals, client_max_size=64 * 1024)
    app.router.add_get("/dashboard", service.page)
    app.router.add_post("/dashboard/sign-in", service.sign_in)
    app.router.add_post("/dashboard/sign-out", service.sign_out)
    app.router.add_get("/dashboard/static/{name}", service.static)
    app.router.add_get("/dashboard/api/kpis", service.kpis)
    app.router.add_get("/dashboard/api/returns/{return_id}", service.timeline)
    app.router.add_get("/dashboard/api/reviews", service.reviews)
    app.router.add_get("/dashboard/api/dead-letters", service.dead_letter_topics)
    app.router.add_get("/dashboard/api/lag", service.consumer_lag)
    app.router.add_get("/health", service.health)
    add_metrics_page(app)
    add_openapi_page(app, Path(__file__).with_name("openapi.json"))
    return app


async def serve(settings: OpsSettings) -> int:
    service = OpsService(settings)
    async with serving(build_app(service), settings.host, settings.port) as stop:
        log.info("reading", sources=len(settings.metrics_sources))
        await stop.wait()
        if service.http is not None:
            await service.http.close()
    log.info("stopped")
    return 0


def main() -> int:
    configure_logging(SERVICE)
    return asyncio.run(serve(OpsSettings.from_env()))
